"""Each "only X writes Y" rule of the README, checked by reading the code (a static scan).

The rules (README, "The invariants and where they live"; each package's ``__init__``):

- only the delivery state module (``mcmp/worker/publishing/delivery_states.py``, or the package
  ``delivery_states/`` it becomes) writes a delivery's ``state``;
- only ``mcmp/worker/accounts/`` writes ``integrationaccounts``;
- only ``mcmp/worker/publishing/post_status.py`` writes a post's ``status`` and ``statusHistory``;
- only ``mcmp/worker/analytics/`` writes ``analyticsrecords``, ``analyticsbackfills`` and the
  analytics fields of deliveries (the publish transition starts the schedule, so the delivery
  state module may set them too);
- the admin API reads and writes no collection itself: it asks ``mcmp.worker.services``.

Every MongoDB write in ``mcmp/`` (pymongo's ``update_one``… ``bulk_write`` and its operation
classes, mongoengine's ``save``/``update``/``modify``/``delete`` on a document class) is found,
its collection named from the receiver (a collection accessor, ``Model._get_collection()``,
``Model.objects``, ``db.<name>`` or ``db[NAME]``, through local and module-level names), and the
fields it writes read from the update or document (operators' inner keys, names built up by
subscript assignment, ``**`` spreads, field-name constants such as ``DeliveryField.STATE``). A
write whose collection cannot be named, or whose fields cannot be read where a rule depends on
them, fails too: spell it out or route it through the owner. The scan is first shown to catch
the writes it replaced.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests import ROOT
from tests.python_source import parse

SCANNED = "mcmp"
NOT_SCANNED = ("mcmp/simulators/",)  # platform twins: their own stores, no MongoDB

WRITE_METHODS = frozenset(
    {
        "update_one",
        "update_many",
        "find_one_and_update",
        "find_one_and_replace",
        "find_one_and_delete",
        "replace_one",
        "insert_one",
        "insert_many",
        "delete_one",
        "delete_many",
        "bulk_write",
    }
)
OPERATIONS = frozenset({"UpdateOne", "UpdateMany", "ReplaceOne", "InsertOne", "DeleteOne", "DeleteMany"})
ENGINE_WRITES = frozenset({"save", "update", "update_one", "modify", "delete", "insert"})
# (method) -> index of the argument holding the update / the document(s)
UPDATE_ARG = {
    "update_one": 1,
    "update_many": 1,
    "find_one_and_update": 1,
    "find_one_and_replace": 1,
    "replace_one": 1,
    "insert_one": 0,
    "insert_many": 0,
    "UpdateOne": 1,
    "UpdateMany": 1,
    "ReplaceOne": 1,
    "InsertOne": 0,
}

MODELS = {
    "Post": "posts",
    "Delivery": "deliveries",
    "IntegrationAccount": "integrationaccounts",
    "Campaign": "campaigns",
    "Client": "clients",
    "AnalyticsRecord": "analyticsrecords",
    "Asset": "assets",
    "User": "users",
    "PostingSlot": "postingslots",
    "ApiKey": "apikeys",
}
COLLECTIONS = frozenset(MODELS.values()) | {"analyticsbackfills"}
# Functions returning one collection (by the name they are called with).
ACCESSORS = {
    "posts": "posts",
    "deliveries": "deliveries",
    "integration_accounts": "integrationaccounts",
    "campaigns": "campaigns",
    "records": "analyticsrecords",
    "jobs": "analyticsbackfills",
    "slots": "postingslots",
    "api_keys": "apikeys",
    "clients": "clients",
}

DELIVERY_STATES = ("mcmp/worker/publishing/delivery_states.py", "mcmp/worker/publishing/delivery_states/")
ACCOUNTS = ("mcmp/worker/accounts/",)
POST_STATUS = ("mcmp/worker/publishing/post_status.py",)
ANALYTICS = ("mcmp/worker/analytics/",)
# ``mcmp dev`` seeds demo clients, accounts and posts as the frontend would create them.
FRONTEND_STAND_IN = ("mcmp/cli/dev.py",)
# Start-up migration of paused analytics schedules written by an earlier version.
SCHEMA_MIGRATION = ("mcmp/models/db.py",)
API_OWN = ("mcmp/api/keys.py",)  # the API's own credentials (``apikeys``)


def _field_constants() -> dict[str, str]:
    """``DeliveryField.STATE`` → ``"state"``, … for every field-name class of the models."""
    from mcmp.models import delivery, integration_account, post

    found: dict[str, str] = {}
    for module in (delivery, integration_account, post):
        for cls_name, cls in vars(module).items():
            if cls_name.endswith("Field") and isinstance(cls, type):
                for attr, value in vars(cls).items():
                    if isinstance(value, str) and not attr.startswith("_"):
                        found[f"{cls_name}.{attr}"] = value
    from mcmp.models import campaign

    for attr, value in vars(campaign.CampaignField).items():
        if isinstance(value, str) and not attr.startswith("_"):
            found[f"CampaignField.{attr}"] = value
    return found


FIELD_CONSTANTS = _field_constants()


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return ""


@dataclass
class Write:
    path: str
    line: int
    collection: str | None  # None: could not be named
    fields: set[str] = field(default_factory=set)
    fields_known: bool = True
    what: str = ""

    def where(self) -> str:
        return f"{self.path}:{self.line} ({self.what})"


@dataclass
class Context:
    """Names visible where a write happens: the enclosing function's and the module's."""

    module_strings: dict[str, str]
    module_values: dict[str, ast.AST]
    function: ast.AST | None

    def strings(self, node: ast.AST) -> str | None:
        """The string a key expression stands for (a literal, a constant name, ``XField.Y``)."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        dotted = _dotted(node)
        if dotted in FIELD_CONSTANTS:
            return FIELD_CONSTANTS[dotted]
        if isinstance(node, ast.Name):
            if node.id in self.module_strings:
                return self.module_strings[node.id]
            value = self._local(node.id)
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                return value.value
        if isinstance(node, ast.Attribute):  # module.CONSTANT
            return self.module_strings.get(node.attr) or FIELD_CONSTANTS.get(
                next((k for k in FIELD_CONSTANTS if k.endswith("." + node.attr)), "")
            )
        return None

    def _assignments(self, name: str) -> Iterator[ast.AST]:
        scope = self.function
        if scope is not None:
            for sub in ast.walk(scope):
                if isinstance(sub, ast.Assign):
                    for target in sub.targets:
                        if isinstance(target, ast.Name) and target.id == name:
                            yield sub.value
                elif isinstance(sub, ast.AnnAssign) and isinstance(sub.target, ast.Name):
                    if sub.target.id == name and sub.value is not None:
                        yield sub.value
                elif isinstance(sub, ast.NamedExpr) and sub.target.id == name:
                    yield sub.value
                elif isinstance(sub, ast.For) and isinstance(sub.target, ast.Name) and sub.target.id == name:
                    yield sub.iter
        if name in self.module_values:
            yield self.module_values[name]

    def _local(self, name: str) -> ast.AST | None:
        return next(self._assignments(name), None)

    def _subscript_writes(self, name: str) -> Iterator[tuple[list[ast.AST], ast.AST]]:
        """``name[k1][k2] = v`` → ([k1, k2], v), and ``name.update({...})`` → ([], {...})."""
        if self.function is None:
            return
        for sub in ast.walk(self.function):
            if isinstance(sub, ast.Assign | ast.AugAssign):
                targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
                for target in targets:
                    keys: list[ast.AST] = []
                    node: ast.AST = target
                    while isinstance(node, ast.Subscript):
                        keys.insert(0, node.slice)
                        node = node.value
                    if keys and isinstance(node, ast.Name) and node.id == name:
                        yield keys, sub.value
            if (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Attribute)
                and sub.func.attr in ("update", "setdefault")
                and isinstance(sub.func.value, ast.Name)
                and sub.func.value.id == name
                and sub.args
            ):
                yield [], sub.args[0]

    # --- collections ------------------------------------------------------------------------
    def collection(self, node: ast.AST, depth: int = 0) -> str | None:
        if depth > 8:
            return None
        if isinstance(node, ast.Call):
            callee = _dotted(node.func)
            last = callee.split(".")[-1]
            if last == "_get_collection":
                return MODELS.get(callee.split(".")[-2]) if "." in callee else None
            if last.lstrip("_") in ACCESSORS:  # ``deliveries()``, a module's own ``_deliveries()``
                return ACCESSORS[last.lstrip("_")]
            if last in ("objects", "filter", "only", "exclude", "order_by", "limit", "first"):
                return self.collection(node.func, depth + 1)
            if (
                isinstance(node.func, ast.Attribute)
                and last in ("get_collection", "__getitem__")
                and node.args
            ):
                return self.strings(node.args[0]) if self.strings(node.args[0]) in COLLECTIONS else None
            if callee in MODELS:  # Model(...): a new document
                return MODELS[callee]
            return None
        if isinstance(node, ast.Attribute):
            if node.attr == "objects" and _dotted(node.value) in MODELS:
                return MODELS[_dotted(node.value)]
            if node.attr in COLLECTIONS:
                return node.attr
            if node.attr in ("database", "client"):  # a client bulkWrite built from a collection
                return self.collection(node.value, depth + 1)
            return self.collection(node.value, depth + 1) if node.attr in ("objects",) else None
        if isinstance(node, ast.Subscript):
            name = self.strings(node.slice)
            return name if name in COLLECTIONS else None
        if isinstance(node, ast.Name):
            for value in self._assignments(node.id):
                found = self.collection(value, depth + 1)
                if found is not None:
                    return found
            annotation = self._annotation(node.id)
            if annotation:
                for doc, coll in (
                    ("DeliveryDoc", "deliveries"),
                    ("PostDoc", "posts"),
                    ("AccountDoc", "integrationaccounts"),
                ):
                    if f"Collection[{doc}]" in annotation:
                        return coll
            return ACCESSORS.get(node.id)  # a name like ``deliveries`` or ``posts``
        return None

    def _annotation(self, name: str) -> str | None:
        if self.function is None or not isinstance(self.function, ast.FunctionDef | ast.AsyncFunctionDef):
            return None
        for arg in self.function.args.args + self.function.args.kwonlyargs:
            if arg.arg == name and arg.annotation is not None:
                return ast.unparse(arg.annotation)
        return None

    # --- fields -----------------------------------------------------------------------------
    def written(self, node: ast.AST | None, top: bool = True, depth: int = 0) -> tuple[set[str], bool]:
        """Fields an update (``top``: operators at this level) or document writes; False if unsure."""
        if node is None or depth > 8:
            return set(), node is None
        if isinstance(node, ast.Dict):
            fields: set[str] = set()
            known = True
            for key, value in zip(node.keys, node.values, strict=True):
                if key is None:  # **spread
                    more, ok = self.written(value, top, depth + 1)
                    fields |= more
                    known &= ok
                    continue
                name = self.strings(key)
                if name is None:
                    known = False
                elif top and name.startswith("$"):
                    more, ok = self.written(value, False, depth + 1)
                    fields |= more
                    known &= ok
                else:
                    fields.add(name)
            return fields, known
        if isinstance(node, ast.List | ast.Tuple):
            fields, known = set(), True
            for element in node.elts:
                more, ok = self.written(element, top, depth + 1)
                fields |= more
                known &= ok
            return fields, known
        if isinstance(node, ast.Name):
            values = list(self._assignments(node.id))
            fields, known = set(), bool(values) or any(True for _ in self._subscript_writes(node.id))
            for value in values:
                more, ok = self.written(value, top, depth + 1)
                fields |= more
                known &= ok
            for keys, value in self._subscript_writes(node.id):
                names = [self.strings(k) for k in keys]
                if not keys:
                    more, ok = self.written(value, top, depth + 1)
                    fields |= more
                    known &= ok
                elif any(n is None for n in names):
                    known = False
                elif top and names[0] and names[0].startswith("$"):
                    if len(names) > 1:
                        fields.add(str(names[1]))
                    else:
                        more, ok = self.written(value, False, depth + 1)
                        fields |= more
                        known &= ok
                else:
                    fields.add(str(names[0]))
            return fields, known
        if isinstance(node, ast.Call) and _dotted(node.func) == "dict.fromkeys" and node.args:
            return self.written(node.args[0], False, depth + 1)
        if isinstance(node, ast.Call) and _dotted(node.func) in ("dict", "list") and node.args:
            return self.written(node.args[0], top, depth + 1)
        if isinstance(node, ast.ListComp | ast.GeneratorExp):
            return self.written(node.elt, top, depth + 1)
        return set(), False


def _module_constants(tree: ast.Module) -> tuple[dict[str, str], dict[str, ast.AST]]:
    strings: dict[str, str] = {}
    values: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    values[target.id] = node.value
                    if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                        strings[target.id] = node.value.value
    return strings, values


def _functions(tree: ast.AST) -> Iterator[ast.AST]:
    """Outermost functions (methods included), so nested helpers share their names."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node)


def writes_in(path: str, source: str, shared: dict[str, str] | None = None) -> list[Write]:
    """Every MongoDB write of one module, with its collection and the fields it writes."""
    tree = parse(source)
    strings, values = _module_constants(tree)
    strings = {**(shared or {}), **strings}
    found: list[Write] = []
    scopes: list[ast.AST | None] = [*list(_functions(tree)), None]
    seen: set[int] = set()
    for scope in scopes:
        ctx = Context(strings, values, scope)
        nodes = ast.walk(scope) if scope is not None else ast.walk(tree)
        for node in nodes:
            if id(node) in seen or not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            method = node.func.attr
            receiver = node.func.value
            if method in WRITE_METHODS:
                seen.add(id(node))
                write = Write(path, node.lineno, ctx.collection(receiver), what=f".{method}()")
                if method == "bulk_write":
                    ops = [
                        sub
                        for sub in ast.walk(scope if scope is not None else tree)
                        if isinstance(sub, ast.Call) and _dotted(sub.func).split(".")[-1] in OPERATIONS
                    ]
                    write.fields_known = bool(ops)
                    for op in ops:
                        kind = _dotted(op.func).split(".")[-1]
                        if kind in UPDATE_ARG:
                            more, ok = _update_of(ctx, op, kind)
                            write.fields |= more
                            write.fields_known &= ok
                elif method in UPDATE_ARG:
                    write.fields, write.fields_known = _update_of(ctx, node, method)
                found.append(write)
            elif method in ENGINE_WRITES and _is_document_chain(receiver):
                seen.add(id(node))
                coll = ctx.collection(receiver)
                fields = {k.arg.split("__")[-1] for k in node.keywords if k.arg}
                found.append(Write(path, node.lineno, coll, fields, method != "save", f".{method}()"))
    return found


def _update_of(ctx: Context, call: ast.Call, method: str) -> tuple[set[str], bool]:
    index = UPDATE_ARG[method]
    keyword = {"update", "replacement", "document", "documents"}
    node = (
        call.args[index]
        if len(call.args) > index
        else next((k.value for k in call.keywords if k.arg in keyword), None)
    )
    top = method not in (
        "insert_one",
        "insert_many",
        "InsertOne",
        "replace_one",
        "ReplaceOne",
        "find_one_and_replace",
    )
    return ctx.written(node, top)


def _is_document_chain(node: ast.AST) -> bool:
    """``Model.objects(...)…``, ``Model(...)`` — a mongoengine write on a known document class."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr == "objects" and _dotted(sub.value) in MODELS:
            return True
        if isinstance(sub, ast.Call) and _dotted(sub.func) in MODELS:
            return True
    return False


def _owned(path: str, owners: tuple[str, ...]) -> bool:
    return any(path == o or (o.endswith("/") and path.startswith(o)) for o in owners)


def scan(sources: dict[str, str] | None = None) -> list[Write]:
    """Every write in ``sources`` (path → text), by default every module of ``mcmp/``."""
    if sources is None:
        sources = {
            str(p.relative_to(ROOT)): p.read_text()
            for p in sorted((ROOT / SCANNED).rglob("*.py"))
            if not str(p.relative_to(ROOT)).startswith(NOT_SCANNED)
        }
    shared: dict[str, str] = {}
    for source in sources.values():
        shared.update(_module_constants(parse(source))[0])
    return [w for path, source in sources.items() for w in writes_in(path, source, shared)]


# --- the rules ----------------------------------------------------------------------------------


def unnamed(writes: list[Write]) -> list[str]:
    return [f"{w.where()}: cannot tell which collection this writes" for w in writes if w.collection is None]


def delivery_state_writers(writes: list[Write]) -> list[str]:
    return [
        f"{w.where()}: writes deliveries' state"
        + ("" if "state" in w.fields else " (or cannot tell: its fields are not spelled out)")
        for w in writes
        if w.collection == "deliveries"
        and not _owned(w.path, DELIVERY_STATES)
        and ("state" in w.fields or not w.fields_known)
    ]


def account_writers(writes: list[Write]) -> list[str]:
    return [
        f"{w.where()}: writes integrationaccounts"
        for w in writes
        if w.collection == "integrationaccounts" and not _owned(w.path, ACCOUNTS + FRONTEND_STAND_IN)
    ]


def post_status_writers(writes: list[Write]) -> list[str]:
    return [
        f"{w.where()}: writes posts' status/statusHistory"
        + ("" if {"status", "statusHistory"} & w.fields else " (or cannot tell)")
        for w in writes
        if w.collection == "posts"
        and not _owned(w.path, POST_STATUS + FRONTEND_STAND_IN)
        and ({"status", "statusHistory"} & w.fields or not w.fields_known)
    ]


def analytics_writers(writes: list[Write]) -> list[str]:
    found = [
        f"{w.where()}: writes {w.collection}"
        for w in writes
        if w.collection in ("analyticsrecords", "analyticsbackfills") and not _owned(w.path, ANALYTICS)
    ]
    found += [
        f"{w.where()}: writes deliveries' analytics fields"
        + ("" if any(f.startswith("analytics") for f in w.fields) else " (or cannot tell)")
        for w in writes
        if w.collection == "deliveries"
        and not _owned(w.path, ANALYTICS + DELIVERY_STATES + SCHEMA_MIGRATION)
        and (any(f.startswith("analytics") for f in w.fields) or not w.fields_known)
    ]
    return found


def api_collection_uses(sources: dict[str, str] | None = None) -> list[str]:
    """The API touches no collection or document class: it asks ``mcmp.worker.services``."""
    if sources is None:
        sources = {
            str(p.relative_to(ROOT)): p.read_text()
            for p in sorted((ROOT / "mcmp" / "api").rglob("*.py"))
            if not _owned(str(p.relative_to(ROOT)), API_OWN)
        }
    found = []
    documents = set(MODELS)
    for path, source in sources.items():
        for node in ast.walk(parse(source)):
            if isinstance(node, ast.Attribute) and node.attr in ("_get_collection", "objects"):
                found.append(f"{path}:{node.lineno}: reads a collection ({_dotted(node)})")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mcmp.models"):
                for alias in node.names:
                    if alias.name in documents or alias.name in ACCESSORS:
                        found.append(f"{path}:{node.lineno}: imports {alias.name} from {node.module}")
    return found


RULES = {
    "every write names its collection": unnamed,
    "only delivery_states writes Delivery.state": delivery_state_writers,
    "only mcmp/worker/accounts writes integrationaccounts": account_writers,
    "only post_status writes a post's status": post_status_writers,
    "only mcmp/worker/analytics writes analytics": analytics_writers,
}


@pytest.fixture(scope="module")
def writes() -> list[Write]:
    return scan()


@pytest.mark.parametrize("rule", list(RULES))
def test_the_code_keeps_each_single_writer_rule(writes: list[Write], rule: str) -> None:
    assert RULES[rule](writes) == []


def test_the_admin_api_reads_no_collection_itself() -> None:
    assert api_collection_uses() == []


def test_the_scan_sees_the_writes_it_must_judge(writes: list[Write]) -> None:
    """Not vacuous: the owners' own writes are found, with their fields."""
    by_path = {(w.path, w.collection) for w in writes}
    assert ("mcmp/worker/accounts/store.py", "integrationaccounts") in by_path
    assert any(w.path.startswith(ANALYTICS) and w.collection == "analyticsrecords" for w in writes)
    assert any(_owned(w.path, DELIVERY_STATES) and "state" in w.fields for w in writes)
    assert any(_owned(w.path, POST_STATUS) and "status" in w.fields for w in writes)


# --- the scan catches the code it replaced, and plain violations ---------------------------------

REPLACED = {
    # services.store_token wrote integrationaccounts from outside mcmp/worker/accounts
    "mcmp/worker/services.py": """
from mcmp.models import IntegrationAccount
def store_token(account_id, scope, access):
    update = {"$set": {"accessToken": access, "status": "connected"}}
    coll = IntegrationAccount._get_collection()
    return coll.find_one_and_update({"_id": account_id, **scope}, update, return_document=True)

def _move_post(post, scope, to_status, note):
    update = {"$set": {"updatedAt": 1}}
    update["$set"]["status"] = to_status
    return post_status.posts().update_one({"_id": post["_id"], **scope}, update)
""",
    "mcmp/worker/scheduling/sweeper.py": """
from mcmp.models.delivery import DeliveryField, deliveries
from mcmp.worker.publishing import delivery_states
def fail_them(ids):
    delivery_states.deliveries().update_many({"_id": {"$in": ids}}, {"$set": {DeliveryField.STATE: "failed"}})
def park(ids, when):
    ops = [UpdateOne({"_id": i}, {"$set": {"analyticsDueAt": when}}) for i in ids]
    deliveries().bulk_write(ops)
def opaque(ids, fields):
    deliveries().update_many({"_id": {"$in": ids}}, fields())
""",
    "mcmp/worker/publishing/pipeline.py": """
from mcmp.models import AnalyticsRecord, IntegrationAccount
def record(doc):
    AnalyticsRecord(**doc).save()
    IntegrationAccount.objects(client_id="c").update(set__status="expired")
def somewhere(thing):
    thing.collection_of_something().insert_one({"a": 1})
""",
}


def test_the_scan_catches_the_writes_it_replaced_and_plain_violations() -> None:
    writes = scan(REPLACED)
    assert account_writers(writes) == [
        "mcmp/worker/services.py:6 (.find_one_and_update()): writes integrationaccounts",
        "mcmp/worker/publishing/pipeline.py:5 (.update()): writes integrationaccounts",
    ]
    assert post_status_writers(writes) == [
        "mcmp/worker/services.py:11 (.update_one()): writes posts' status/statusHistory"
    ]
    assert delivery_state_writers(writes) == [
        "mcmp/worker/scheduling/sweeper.py:5 (.update_many()): writes deliveries' state",
        "mcmp/worker/scheduling/sweeper.py:10 (.update_many()): writes deliveries' state"
        " (or cannot tell: its fields are not spelled out)",
    ]
    assert analytics_writers(writes) == [
        "mcmp/worker/publishing/pipeline.py:4 (.save()): writes analyticsrecords",
        "mcmp/worker/scheduling/sweeper.py:8 (.bulk_write()): writes deliveries' analytics fields",
        "mcmp/worker/scheduling/sweeper.py:10 (.update_many()): writes deliveries' analytics fields"
        " (or cannot tell)",
    ]
    assert unnamed(writes) == [
        "mcmp/worker/publishing/pipeline.py:7 (.insert_one()): cannot tell which collection this writes"
    ]
    owner = scan(
        {"mcmp/worker/publishing/delivery_states/claims.py": REPLACED["mcmp/worker/scheduling/sweeper.py"]}
    )
    assert delivery_state_writers(owner) == []  # the package the state module becomes owns it too


def test_the_api_check_catches_a_route_reading_a_collection() -> None:
    route = """
from mcmp.models import Post
def get_post(post_id):
    return Post._get_collection().find_one({"_id": post_id})
"""
    assert api_collection_uses({"mcmp/api/routes/posts.py": route}) == [
        "mcmp/api/routes/posts.py:2: imports Post from mcmp.models",
        "mcmp/api/routes/posts.py:4: reads a collection (Post._get_collection)",
    ]
