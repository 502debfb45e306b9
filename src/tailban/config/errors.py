"""One error type for every configuration mistake, always naming where it is."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration mistake, located by file, line and option so an admin can fix it."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 option: str | None = None, section: str | None = None) -> None:
        self.file = file
        self.line = line
        self.option = option
        self.section = section
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        what = ""
        if self.section and self.option:
            what = f"[{self.section}] {self.option}: "
        elif self.section:
            what = f"[{self.section}]: "
        elif self.option:
            what = f"{self.option}: "
        return f"{where}: {what}{self.message}" if where else f"{what}{self.message}"
