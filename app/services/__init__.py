"""Domain services: the rules, every write, every WeChat call. No request, g or session here."""


class DomainError(Exception):
    """A rule was broken; views map it to a form error, a flash or a status code."""

    code = "domain_error"

    def __init__(self, message: str = "", **details):
        super().__init__(message or self.code)
        self.details = details
