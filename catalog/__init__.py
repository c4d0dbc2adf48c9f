"""The catalog: teams, services, environments and who belongs where.

Built once from platform.yml (`catalog.load`) and passed to every command. It answers
"which team owns checkout?", "which channel is theirs?" and "is alice in payments?".
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog.load import did_you_mean
from catalog.model import Environment, PlatformModel, Service, Team
from kernel.ids import EnvironmentName, ServiceName, SlackUserId, TeamName
from kernel.ports.databases import MAX_IDENTIFIER, ServiceDatabase
from kernel.ports.platform import Directory


class UnknownName(LookupError):
    """A name not in the catalog; the message carries a did-you-mean."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind, self.name = kind, name
        hint = did_you_mean(name, known)
        listing = "" if hint or not known else f"; known: {', '.join(sorted(known)[:10])}"
        end = "" if hint else "."
        super().__init__(f"No {kind} named '{name}'{hint}{listing}{end}")


@dataclass(frozen=True)
class Catalog:
    """Read-only lookups over the platform model."""

    model: PlatformModel

    def team(self, name: str) -> Team:
        if name not in self.model.teams:
            raise UnknownName("team", name, list(self.model.teams))
        return self.model.teams[name]

    def service(self, name: str) -> Service:
        if name not in self.model.services:
            raise UnknownName("service", name, list(self.model.services))
        return self.model.services[name]

    def environment(self, name: str) -> Environment:
        if name not in self.model.environments:
            raise UnknownName("environment", name, list(self.model.environments))
        return self.model.environments[name]

    def service_names(self) -> list[ServiceName]:
        return [ServiceName(n) for n in sorted(self.model.services)]

    def team_names(self) -> list[TeamName]:
        return [TeamName(n) for n in sorted(self.model.teams)]

    def services_of(self, team: str) -> list[ServiceName]:
        return [ServiceName(n) for n, s in sorted(self.model.services.items()) if s.owner == team]

    def channel_of_service(self, name: str) -> str:
        service = self.service(name)
        return service.slack_channel or self.team(service.owner).slack_channel

    def environments_of(self, name: str) -> list[EnvironmentName]:
        return [EnvironmentName(e) for e in self.service(name).environments]

    def namespace(self, service: str, env: str) -> str:
        """The Kubernetes namespace of a service in an environment: `<service>-<env>`."""
        return f"{service}-{env}"

    def database(self, service: str, env: str) -> ServiceDatabase | None:
        """The golden path's PostgreSQL database of a service in an environment, or None
        where the environment names no `database_server`. ValueError if a name would be
        longer than PostgreSQL keeps (63 characters)."""
        server_name = self.environment(env).database_server
        if server_name is None:
            return None
        server = self.model.database_servers[server_name]
        database = f"{server.database_prefix}{service}_{env}".replace("-", "_")
        owner = f"{database}_owner"
        if len(owner) + len("_ro") > MAX_IDENTIFIER:
            raise ValueError(
                f"the database name {database!r} is too long for PostgreSQL "
                f"(at most {MAX_IDENTIFIER - 9} characters); choose a shorter service name"
            )
        return ServiceDatabase(
            server=server_name,
            host=server.host,
            port=server.port,
            sslmode=server.sslmode,
            database=database,
            owner=owner,
            vault_role=f"{service}-{env}",
            readonly_role=f"{service}-{env}-readonly",
        )

    def argocd_application(self, service: str, env: str) -> str:
        pattern = self.service(service).argocd_application or f"{service}-{{env}}"
        return pattern.replace("{env}", env)

    def gitlab_group(self, team: str) -> str:
        return self.team(team).gitlab_group or team

    def kubernetes_group(self, team: str) -> str:
        return self.team(team).kubernetes_group or team

    def operators(self) -> str:
        """Who to ask about the bot itself (a system it is not configured for), as mrkdwn:
        the platform admins' user group, else the admins listed by Slack id."""
        platform = self.model.platform
        if platform.admins_usergroup:  # validated as S…: safe in mrkdwn
            return f"the platform team (<!subteam^{platform.admins_usergroup}>)"
        ids = [f"<@{admin}>" for admin in platform.admins if "@" not in admin]
        return f"the platform team ({', '.join(ids)})" if ids else "the platform team"

    def lists_emails(self) -> bool:
        """Whether any team or the platform admins list someone by e-mail (only then is a
        person's address worth asking Slack for)."""
        listed = [m for team in self.model.teams.values() for m in team.members]
        return any("@" in m for m in [*listed, *self.model.platform.admins])

    # -- services registered at run time (new-service), merged in by engine.registry ----

    def add_service(self, name: str, service: Service) -> None:
        """Make a registered service known; its owner and environments must exist."""
        self.team(service.owner)
        for env in service.environments:
            self.environment(env)
        self.model.services[name] = service

    def remove_service(self, name: str) -> None:
        self.model.services.pop(name, None)


@dataclass(frozen=True)
class Membership:
    """What someone is on the platform: their teams and whether they are an admin."""

    user: SlackUserId
    teams: tuple[TeamName, ...]
    platform_admin: bool


async def membership_of(
    catalog: Catalog, directory: Directory, user: SlackUserId, *, email: str | None
) -> Membership:
    """Teams a user belongs to: listed by id or e-mail, or through the team's user group."""
    teams = []
    for name, team in sorted(catalog.model.teams.items()):
        if await _listed_or_in_group(directory, user, email, team.members, team.slack_usergroup):
            teams.append(TeamName(name))
    platform = catalog.model.platform
    admin = await _listed_or_in_group(
        directory, user, email, platform.admins, platform.admins_usergroup
    )
    return Membership(user=user, teams=tuple(teams), platform_admin=admin)


async def _listed_or_in_group(
    directory: Directory,
    user: SlackUserId,
    email: str | None,
    members: tuple[str, ...],
    usergroup: str | None,
) -> bool:
    listed = {m.lower() for m in members}
    if user.lower() in listed or (email is not None and email.lower() in listed):
        return True
    return usergroup is not None and user in await directory.usergroup_members(usergroup)
