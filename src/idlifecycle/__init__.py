"""idlifecycle: keeps school accounts in Entra ID, Google Workspace and AD in step with the MIS."""

__version__ = "0.1.0"
