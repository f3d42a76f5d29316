"""The ``remit`` command line: thin commands over the stages below."""
