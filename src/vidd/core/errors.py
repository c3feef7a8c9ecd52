"""Errors that come from the user's input (files, configs, data): the CLI prints them without a traceback."""


class UserError(Exception):
    pass
