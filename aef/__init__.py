"""AEF: turns a recorded SOP into a live, human-supervised browser workflow."""

__version__ = "0.1.0"
