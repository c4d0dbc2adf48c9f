"""The runtime under every feature: the durable Run engine, progress, the outbox and its
deliverer, the directory, audit, the database and its migrations, metrics, logs and the
one home of background tasks. Imports the catalog and the kernel, never a feature.
"""
