"""The ``encore`` command line: ``cli.main`` assembles the parser and handles errors; one module per command."""
