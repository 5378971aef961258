"""Shares, SIRO-approved time-limited grants, approval links, and the nightly drift check."""

from idlifecycle.access.drift import ShareGroups, after_run, desired_share_groups

__all__ = ["ShareGroups", "after_run", "desired_share_groups"]
