from unijob.cli import main

main()
