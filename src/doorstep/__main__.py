from doorstep.cli.main import main

main()
