"""Every port: the Protocols features see, and the values that cross them.

`platform` holds the platform's own (audit, directory, Runs, changes, messages);
`systems` the external systems' (Kubernetes, GitLab, Vault, Argo CD, observability).
"""
