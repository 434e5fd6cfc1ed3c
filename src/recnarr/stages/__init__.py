"""The commands' entry points, one module per command or group: each reads the config, calls the library
code in the domain packages and writes its stage's folder of the run (`cfg.layout`). `cli.COMMANDS` names
them; the domain packages never import this package."""
