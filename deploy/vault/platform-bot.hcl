# platform-bot's own policy on Vault / OpenBao: exactly what adapters/vault.py calls while
# the bot runs (new-service's "Vault" step and its clean-up), and nothing else.
# tests/integration/test_vault_policy.py runs every one of those calls with a token that
# holds only this policy on a real OpenBao, and removes each capability in turn to show
# the call that needs it then fails. Mounts are the adapter's defaults: KV v2 at
# `secret/`, Kubernetes auth at `auth/kubernetes/` (change the paths if yours differ).
#
#   bao policy write platform-bot deploy/vault/platform-bot.hcl
#   bao token create -policy=platform-bot -no-default-policy -period=768h -orphan
#
# Not here, on purpose: reading or updating the placeholder at a service's path (written
# once, with check-and-set 0), enabling or configuring auth methods (the platform team
# points Kubernetes auth at each cluster once: docs/operations.md), mounting engines or
# creating the transit key (the platform team does that once too), and any other mount.
#
# What `/platform secret` needs (features/secrets) is at the end: writing a key's value
# below a service's path, its versions and metadata, and the bot's own transit key.
# `read` on values is there for `secret rollback` only (it copies an earlier version as
# a new one: KV v2 has no server-side rollback); drop it if you do not offer rollback.

# A service's KV path is secret/<team>/<service>/<env>: the bot creates it with a
# placeholder (ensure_kv_path), never overwrites it.
path "secret/data/+/+/+" {
  capabilities = ["create"]
}

# Whether the path exists (kv_exists, describe, ensure_kv_path), and removing it with
# everything the team stored below it (delete_service lists, then deletes). A LIST is
# asked of "<path>/", which the second rule covers.
path "secret/metadata/+/+/+" {
  capabilities = ["read", "delete"]
}
path "secret/metadata/+/+/+/*" {
  capabilities = ["read", "update", "list", "delete"]
}

# Each service's ACL policy <team>-<service>-<env> (ensure_policy, read_policy,
# delete_service). Writing a policy is an `update` even when it is new: this endpoint
# has no existence check, so `create` would be idle.
path "sys/policy/*" {
  capabilities = ["read", "update", "delete"]
}

# ...but never the policy every token has or the bot's own: rewriting `default` or
# `platform-bot` would widen what everyone, or the bot, may do. (`root` cannot be
# changed by anyone.)
path "sys/policy/default" {
  capabilities = ["deny"]
}
path "sys/policy/platform-bot" {
  capabilities = ["deny"]
}

# Each service's Kubernetes auth role, bound to its service account and namespace
# (ensure_kubernetes_role, read_kubernetes_role, describe, delete_service).
path "auth/kubernetes/role/*" {
  capabilities = ["create", "read", "update", "delete"]
}

# `/platform secret set|list|delete|rollback`: one KV v2 secret per key at
# secret/<team>/<service>/<env>/<KEY> (its metadata, above, says who set which version).
# create: a key's first version; update: later ones (check-and-set); read: the version a
# retried step already wrote, and rollback's copy; delete: the newest version (soft).
path "secret/data/+/+/+/*" {
  capabilities = ["create", "update", "read", "delete"]
}

# A value waiting for approval is kept encrypted with the bot's own transit key (the
# platform team creates it once: `bao secrets enable transit` and
# `bao write -f transit/keys/platform-bot type=aes256-gcm96`); approvers see a keyed hash.
path "transit/encrypt/platform-bot" {
  capabilities = ["update"]
}
path "transit/decrypt/platform-bot" {
  capabilities = ["update"]
}
path "transit/hmac/platform-bot" {
  capabilities = ["update"]
}

# The golden path's PostgreSQL (adapters/postgres.py, the `postgres` step and its
# clean-up). The platform team mounts the database engine and configures each server's
# admin connection once (`bao write database/config/<server> ...`, docs/templates.md);
# the bot only reads that it is there.
path "database/config/+" {
  capabilities = ["read"]
}

# The roles that issue logins: each service's `<service>-<env>` and
# `<service>-<env>-readonly`, and the bot's own `platform-bot-<server>` (five-minute
# logins with CREATEDB and CREATEROLE for the DDL Vault cannot run). Writing a role is
# everything the server's admin connection may do, so this rule is as strong as that
# connection: give the connection CREATEDB and CREATEROLE, never SUPERUSER.
path "database/roles/*" {
  capabilities = ["create", "read", "update", "delete"]
}

# The bot's own admin logins, and revoking each as soon as its DDL is done. It never
# reads a service's logins (those are for the service's Kubernetes role).
path "database/creds/platform-bot-*" {
  capabilities = ["read"]
}
path "sys/leases/revoke/database/creds/platform-bot-*" {
  capabilities = ["update"]
}

# `/platform secret rotate <service> <env> database`: revoke every login issued for a
# service (Vault drops each on the server; the Vault Agents fetch new ones). The
# endpoint needs sudo; it is limited to the database engine's logins.
path "sys/leases/revoke-prefix/database/creds/*" {
  capabilities = ["update", "sudo"]
}
