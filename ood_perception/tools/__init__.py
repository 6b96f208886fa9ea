"""One module per `ood-perception` command: `add_arguments(parser)` and `run(args) -> int`."""
