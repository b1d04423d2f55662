"""What a user can fix. An error of this type carries a message meant for the person at the command line
(what is wrong and what to do about it): `asr` prints it as one line. Any other exception is a bug, and `asr`
reports it as one, with its traceback. A ValueError, so that callers of the library can catch it as one."""


class UserError(ValueError):
    pass
