"""The Active Directory connector (ldap3): `ADConnector`, named by CONNECTOR_TYPES as
"idlifecycle.connectors.ad:ADConnector". The parts are described in `connector`'s docstring."""

from idlifecycle.connectors.ad.connector import ADConnector

__all__ = ["ADConnector"]
