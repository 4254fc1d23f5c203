"""One module per `sems` subcommand: add_arguments(parser) and run(args) -> int."""
