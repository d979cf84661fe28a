"""The ``mcmp`` command: the composition root that wires worker, dispatcher, API and dev stack.

Nothing below imports this package; it may import any of them.
"""
