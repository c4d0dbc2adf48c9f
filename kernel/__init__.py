"""The domain every room shares: ids, Actions, errors, replies, mrkdwn, Block Kit and ports.

Imports nothing of ours and does no I/O, so any room may depend on it.
"""
