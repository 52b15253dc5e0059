"""One module per `sciscore` subcommand; each exposes `register(subparsers)`."""
