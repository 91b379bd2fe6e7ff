"""The command line: argument parsing, the commands, rendering, export."""
