"""The ``holdsgm`` command line (one entry point, one module per subcommand)."""


def add_set_argument(p, help_text: str = "override a config value (repeatable)") -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``: the config override shared by subcommands."""
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[], help=help_text)
