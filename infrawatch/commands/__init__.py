"""One module per `infrawatch` subcommand: HELP, add_arguments(parser), run(args) -> int; registered in infrawatch/cli.py."""
