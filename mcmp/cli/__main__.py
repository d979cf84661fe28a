from mcmp.cli.main import main

main()
