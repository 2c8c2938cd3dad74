# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of the ``trek10.ec2ssm.ssm_instances`` inventory plugin.

PRIVATE to this collection. Everything here is plain data in, plain data out: the inventory options
are checked and turned into query plans, and the records AWS returns (``ssm:DescribeInstanceInformation``
joined with ``ec2:DescribeInstances``) are turned into host records, host names, hostvars and the
connection variables. No boto3, no Ansible, no I/O: the plugin makes the calls, this module decides.

Rules of this module:

1. A *host record* is a flat, JSON-serialisable dict whose keys are the documented hostvar names
   (``instance_id``, ``ping_status``, ``ec2_tags``, ...). It is what the inventory cache stores, so a
   change to hostnames, compose or os_user_map applies to cached data without calling AWS.
2. Option errors raise :class:`OptionError`, which names the option and what is wrong with it.
3. ``DescribeInstanceInformation`` refuses tag filters mixed with other filter kinds, so a filter set
   sends only its tag filters to AWS when it has any, and checks the rest here (client side).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

CONNECTION_PLUGIN = "trek10.ec2ssm.ssm_ssh"
"""``ansible_connection`` value set for every host when ``set_connection_vars`` is true."""

REGION_VAR = "ansible_ec2ssm_region"
"""The connection plugin's own region variable."""

EIC_PUSH_VAR = "ansible_ec2ssm_eic_push"
"""Set false for hybrid nodes: EC2 Instance Connect cannot push keys to them (the connection then
uses a key the node already trusts)."""

RECORD_VERSION = 1
"""Bumped whenever the shape of a host record changes, so older cache entries are not reused."""

#: aws_ec2-style filter names that ``DescribeInstanceInformation`` understands, mapped to the API
#: filter key and to the InstanceInformation field the same filter is checked against client side.
SSM_FILTERS: dict[str, tuple[str, str]] = {
    "ping-status": ("PingStatus", "PingStatus"),
    "resource-type": ("ResourceType", "ResourceType"),
    "platform-type": ("PlatformTypes", "PlatformType"),
    "agent-version": ("AgentVersion", "AgentVersion"),
    "iam-role": ("IamRole", "IamRole"),
    "association-status": ("AssociationStatus", "AssociationStatus"),
    "activation-id": ("ActivationIds", "ActivationId"),
    "instance-id": ("InstanceIds", "InstanceId"),
}

_SSM_FIELD = dict(SSM_FILTERS.values())

SSM_FILTER_MAX_VALUES = 100
"""AWS: an InstanceInformationStringFilter takes 1 to 100 values."""

EC2_FILTER_VALUES_PER_CALL = 200
"""EC2 refuses requests with more than 200 filter values in total (FilterLimitExceeded)."""

SSM_PAGE_SIZE = 50
"""The largest MaxResults DescribeInstanceInformation accepts."""

#: Hostname sources (``hostnames`` entries) mapped to the host record key they read.
HOSTNAME_SOURCES: dict[str, str] = {
    "instance-id": "instance_id",
    "private-ip-address": "private_ip_address",
    "private-ip": "private_ip_address",
    "private-dns-name": "private_dns_name",
    "computer-name": "computer_name",
}

#: Default OS user by SSM PlatformName, matched case-insensitively as a prefix (longest first).
#: The users are the defaults of the vendors' official AMIs.
DEFAULT_OS_USERS: dict[str, str] = {
    "amazon linux": "ec2-user",
    "ubuntu": "ubuntu",
    "debian": "admin",
    "red hat enterprise linux": "ec2-user",
    "rhel": "ec2-user",
    "centos": "centos",
    "fedora": "fedora",
    "rocky": "rocky",
    "almalinux": "ec2-user",
    "oracle linux": "ec2-user",
    "suse": "ec2-user",
    "sles": "ec2-user",
    "freebsd": "ec2-user",
}

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")

Filters = tuple[tuple[str, tuple[str, ...]], ...]
"""Filters as sorted ``(name, values)`` pairs: hashable, comparable, stable in cache keys."""


class OptionError(ValueError):
    """An inventory option is malformed; ``str()`` names the option and says what to write."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(option, message)
        self.option = option
        self.message = message

    def __str__(self) -> str:
        return f"option '{self.option}': {self.message}"


# --------------------------------------------------------------------------------------------
# Filters and query plans
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterSet:
    """One conjunction of filters: a host matches when it matches every entry.

    ``tags`` hold ``tag:<Key>`` and ``tag-key`` filters, ``ssm`` the other DescribeInstanceInformation
    filters (by API key), ``ec2`` everything else, which only ``ec2:DescribeInstances`` can evaluate.
    """

    tags: Filters = ()
    ssm: Filters = ()
    ec2: Filters = ()

    def ssm_request_filters(self) -> list[dict[str, Any]]:
        """The ``Filters`` argument of DescribeInstanceInformation for this set.

        AWS: "Tag filters can't be combined with other filter types", so with tags only the tags are
        sent; :meth:`matches_ssm` then checks the other SSM filters on the results.
        """
        pushed = self.tags or self.ssm
        return [{"Key": key, "Values": list(values)} for key, values in pushed]

    def matches_ssm(self, info: Mapping[str, Any]) -> bool:
        """Whether an InstanceInformation record passes the SSM filters AWS did not apply."""
        if not self.tags:
            return True
        return all(str(info.get(_SSM_FIELD[key], "")) in values for key, values in self.ssm)

    def matches_locally(self, record: Mapping[str, Any]) -> bool:
        """Whether a host record passes the tag and SSM filters (used for ``exclude_filters``).

        Tag values compare exactly (AWS tag filters do too); EC2 filters are not checked here.
        """
        tags = record.get("ec2_tags") or {}
        for key, values in self.tags:
            if key == "tag-key":
                if not any(value in tags for value in values):
                    return False
            elif tags.get(key[len("tag:") :]) not in values:
                return False
        ssm_info = record.get("_ssm") or {}
        return all(str(ssm_info.get(_SSM_FIELD[key], "")) in values for key, values in self.ssm)

    def ec2_request_filters(self) -> list[dict[str, Any]]:
        return [{"Name": name, "Values": list(values)} for name, values in self.ec2]

    def ec2_value_count(self) -> int:
        return sum(len(values) for _name, values in self.ec2)


def _filter_values(option: str, name: str, value: Any) -> tuple[str, ...]:
    """A filter's value(s) as a tuple of strings; YAML booleans and empty lists are refused."""
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise OptionError(option, f"filter '{name}' has an empty list of values")
    out: list[str] = []
    for item in items:
        if isinstance(item, bool):
            raise OptionError(
                option,
                f"filter '{name}' has the YAML boolean {item!r}; AWS values are strings, so quote it "
                f"(for example '{str(item).lower()}')",
            )
        if item is None or isinstance(item, dict | list):
            raise OptionError(option, f"filter '{name}' needs a string or a list of strings, got {item!r}")
        text = str(item)
        if not text:
            raise OptionError(option, f"filter '{name}' has an empty value")
        if text not in out:
            out.append(text)
    return tuple(out)


def _classify(option: str, name: Any, values: tuple[str, ...]) -> tuple[str, str]:
    """Which family a filter name belongs to (``tags``, ``ssm`` or ``ec2``) and its API name."""
    if not isinstance(name, str) or not name:
        raise OptionError(option, f"filter names must be non-empty strings, got {name!r}")
    if name.startswith("tag:"):
        if len(name) == len("tag:"):
            raise OptionError(option, "filter 'tag:' needs a tag key, for example 'tag:Environment'")
        family = "tags"
    elif name == "tag-key":
        family = "tags"
    elif name in SSM_FILTERS:
        family = "ssm"
        name = SSM_FILTERS[name][0]
    elif any(char.isupper() for char in name):
        kebab = _CAMEL.sub("-", name).lower()
        hint = f"; did you mean '{kebab}'?" if kebab in SSM_FILTERS else ""
        raise OptionError(
            option,
            f"unknown filter '{name}': use the aws_ec2-style names, e.g. 'ping-status', "
            f"'platform-type', 'tag:Name' or any ec2:DescribeInstances filter{hint}",
        )
    else:
        family = "ec2"
    if family != "ec2" and len(values) > SSM_FILTER_MAX_VALUES:
        raise OptionError(
            option, f"filter '{name}' has {len(values)} values; AWS accepts at most {SSM_FILTER_MAX_VALUES}"
        )
    return family, name


def _merge(
    option: str, into: dict[str, dict[str, tuple[str, ...]]], family: str, name: str, values: tuple[str, ...]
) -> None:
    """Add one filter to a set; the same filter given twice (``tags`` and ``filters``) is ANDed."""
    existing = into[family].get(name)
    if existing is None:
        into[family][name] = values
        return
    if name == "tag-key":
        # tag-key values are ORed by AWS; two tag-key filters mean "has one of each list" which one
        # API filter cannot express, so keep it simple and refuse.
        raise OptionError(option, "'tag-key' is given twice; put all keys in one list")
    both = tuple(value for value in existing if value in values)
    if not both:
        raise OptionError(
            option,
            f"filter '{name}' is given twice with no value in common ({existing} and {values}), "
            "so nothing could match",
        )
    into[family][name] = both


def filter_set(
    option: str,
    filters: Mapping[str, Any] | None,
    *,
    tags: Mapping[str, Any] | None = None,
    defaults: Mapping[str, str] | None = None,
) -> FilterSet:
    """Build one :class:`FilterSet` from an aws_ec2-style filter dict plus the ``tags`` option.

    ``defaults`` (``{"ping-status": "Online", ...}``) apply only when the dict does not name the
    filter itself, like aws_ec2's default ``instance-state-name``.
    """
    if filters is not None and not isinstance(filters, Mapping):
        raise OptionError(
            option, f"must be a dictionary of filter name to value(s), got {type(filters).__name__}"
        )
    families: dict[str, dict[str, tuple[str, ...]]] = {"tags": {}, "ssm": {}, "ec2": {}}
    for name, value in (filters or {}).items():
        values = _filter_values(option, str(name), value)
        family, api_name = _classify(option, name, values)
        _merge(option, families, family, api_name, values)
    if tags:
        for key, value in tags.items():
            values = _filter_values("tags", f"tag:{key}", value)
            family, api_name = _classify("tags", f"tag:{key}", values)
            _merge("tags", families, family, api_name, values)
    for name, value in (defaults or {}).items():
        api_key = SSM_FILTERS[name][0]
        families["ssm"].setdefault(api_key, (value,))
    return FilterSet(
        tags=tuple(sorted(families["tags"].items())),
        ssm=tuple(sorted(families["ssm"].items())),
        ec2=tuple(sorted(families["ec2"].items())),
    )


def check_tags(value: Any) -> dict[str, Any]:
    """Validate the ``tags`` option: a dict of tag key to a value or a list of values."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise OptionError("tags", f"must be a dictionary of tag key to value(s), got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str) or not key:
            raise OptionError("tags", f"tag keys must be non-empty strings, got {key!r}")
    return dict(value)


def query_plan(
    *,
    tags: Any,
    filters: Any,
    include_filters: Any,
    exclude_filters: Any,
    include_offline: bool,
    include_hybrid: bool,
) -> tuple[list[FilterSet], list[FilterSet]]:
    """The include and exclude filter sets for the given options, aws_ec2 style.

    A host is listed when it matches at least one include set (``filters`` is the first, then each
    ``include_filters`` entry) and no exclude set. ``tags`` narrow every include set. Unless told
    otherwise, include sets keep only Online nodes and only EC2 instances.
    """
    tag_map = check_tags(tags)
    defaults: dict[str, str] = {}
    if not include_offline:
        defaults["ping-status"] = "Online"
    if not include_hybrid:
        defaults["resource-type"] = "EC2Instance"
    for name, value in (("include_filters", include_filters), ("exclude_filters", exclude_filters)):
        if value is not None and not isinstance(value, list):
            raise OptionError(name, f"must be a list of filter dictionaries, got {type(value).__name__}")
    raw_includes: list[tuple[str, Any]] = []
    if filters or not include_filters:
        raw_includes.append(("filters", filters or {}))
    raw_includes += [(f"include_filters[{n}]", entry) for n, entry in enumerate(include_filters or [])]
    includes: list[FilterSet] = []
    for option, entry in raw_includes:
        built = filter_set(option, entry, tags=tag_map, defaults=defaults)
        if built not in includes:
            includes.append(built)
    excludes = [filter_set(f"exclude_filters[{n}]", entry) for n, entry in enumerate(exclude_filters or [])]
    for n, entry in enumerate(excludes):
        if not (entry.tags or entry.ssm or entry.ec2):
            raise OptionError(f"exclude_filters[{n}]", "an empty filter dictionary would exclude every host")
    return includes, excludes


def check_regions(value: Any) -> list[str]:
    """Validate ``regions``: a list of region names such as ``us-east-1`` (catches ``us-east1``)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise OptionError("regions", f"must be a list of region names, got {type(value).__name__}")
    regions: list[str] = []
    for item in value:
        if not isinstance(item, str) or not _REGION.match(item):
            raise OptionError("regions", f"{item!r} is not an AWS region name such as 'us-east-1'")
        if item not in regions:
            regions.append(item)
    return regions


def chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    """Consecutive slices of ``items`` of at most ``size`` (at least 1) elements."""
    size = max(1, size)
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


# --------------------------------------------------------------------------------------------
# Host records
# --------------------------------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def tag_list_to_dict(tags: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    """``[{"Key": k, "Value": v}]`` (EC2 and SSM shape) to ``{k: v}``."""
    return {str(tag["Key"]): str(tag.get("Value", "")) for tag in tags or () if "Key" in tag}


def is_hybrid(info: Mapping[str, Any]) -> bool:
    """A hybrid (``mi-*``) managed node: not EC2, so EC2 Instance Connect cannot push keys to it."""
    return info.get("ResourceType") == "ManagedInstance" or str(info.get("InstanceId", "")).startswith("mi-")


def host_record(
    info: Mapping[str, Any],
    instance: Mapping[str, Any] | None,
    region: str,
    hybrid_tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Join one SSM InstanceInformation record with its EC2 instance (if any) into a host record.

    SSM is the source of truth for reachability (ping status, agent, platform); EC2 adds placement,
    type, launch time, tags and the instance profile. A hybrid node has no EC2 record; its tags come
    from ``ssm:ListTagsForResource`` (``hybrid_tags``).
    """
    ec2 = instance or {}
    placement = ec2.get("Placement") or {}
    profile = ec2.get("IamInstanceProfile") or None
    hybrid = is_hybrid(info)
    tags = dict(hybrid_tags or {}) if hybrid else tag_list_to_dict(ec2.get("Tags"))
    return {
        "instance_id": str(info["InstanceId"]),
        "region": region,
        "availability_zone": placement.get("AvailabilityZone"),
        "resource_type": info.get("ResourceType"),
        "eic_capable": not hybrid,
        "ping_status": info.get("PingStatus"),
        "last_ping_time": _iso(info.get("LastPingDateTime")),
        "agent_version": info.get("AgentVersion"),
        "platform_name": info.get("PlatformName"),
        "platform_type": info.get("PlatformType"),
        "platform_version": info.get("PlatformVersion"),
        "computer_name": info.get("ComputerName"),
        "private_ip_address": ec2.get("PrivateIpAddress") or info.get("IPAddress"),
        "private_dns_name": ec2.get("PrivateDnsName") or None,
        "instance_type": ec2.get("InstanceType"),
        "instance_state": (ec2.get("State") or {}).get("Name"),
        "launch_time": _iso(ec2.get("LaunchTime")),
        "image_id": ec2.get("ImageId"),
        "architecture": ec2.get("Architecture"),
        "vpc_id": ec2.get("VpcId"),
        "subnet_id": ec2.get("SubnetId"),
        "iam_instance_profile": {"arn": profile.get("Arn"), "id": profile.get("Id")} if profile else None,
        "iam_role": info.get("IamRole"),
        "ec2_tags": tags,
        # Raw SSM fields the exclude filters compare against; dropped from hostvars.
        "_ssm": {field: info[field] for field in _SSM_FIELD.values() if info.get(field) is not None},
    }


def hostvars(record: Mapping[str, Any], prefix: str = "", suffix: str = "") -> dict[str, Any]:
    """The AWS-derived hostvars of a record, renamed with ``hostvars_prefix``/``hostvars_suffix``."""
    return {f"{prefix}{key}{suffix}": value for key, value in record.items() if not key.startswith("_")}


# --------------------------------------------------------------------------------------------
# Host names
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostnameRule:
    """One ``hostnames`` entry: a source, optionally prefixed by another source or a literal."""

    name: str
    prefix: str = ""
    separator: str = "_"


def _check_source(option: str, source: Any) -> str:
    if not isinstance(source, str) or not source:
        raise OptionError(option, f"hostname sources must be non-empty strings, got {source!r}")
    if source.startswith("tag:") and len(source) > len("tag:"):
        return source
    if source in HOSTNAME_SOURCES:
        return source
    known = ", ".join(sorted(HOSTNAME_SOURCES))
    raise OptionError(option, f"unknown hostname source {source!r}; use one of {known} or 'tag:<Key>'")


def parse_hostnames(value: Any) -> tuple[HostnameRule, ...]:
    """Validate ``hostnames`` (strings or ``{name, prefix, separator}`` dicts); default instance-id."""
    if value is None or value == []:
        return (HostnameRule("instance-id"),)
    if not isinstance(value, list):
        raise OptionError("hostnames", f"must be a list, got {type(value).__name__}")
    rules: list[HostnameRule] = []
    for n, entry in enumerate(value):
        option = f"hostnames[{n}]"
        if isinstance(entry, str):
            rules.append(HostnameRule(_check_source(option, entry)))
            continue
        if not isinstance(entry, Mapping):
            raise OptionError(
                option, f"must be a string or a dictionary with 'name', got {type(entry).__name__}"
            )
        unknown = sorted(set(entry) - {"name", "prefix", "separator"})
        if unknown:
            raise OptionError(
                option, f"unknown key(s) {', '.join(map(str, unknown))}; use name, prefix, separator"
            )
        if "name" not in entry:
            raise OptionError(option, "a dictionary entry needs a 'name'")
        prefix = entry.get("prefix", "") or ""
        separator = entry.get("separator", "_")
        if not isinstance(prefix, str) or not isinstance(separator, str):
            raise OptionError(option, "'prefix' and 'separator' must be strings")
        rules.append(HostnameRule(_check_source(option, entry["name"]), prefix, separator))
    return tuple(rules)


def _resolve(source: str, record: Mapping[str, Any]) -> str | None:
    if source.startswith("tag:"):
        value = (record.get("ec2_tags") or {}).get(source[len("tag:") :])
    else:
        value = record.get(HOSTNAME_SOURCES[source])
    return str(value) if value not in (None, "") else None


def _prefix_value(prefix: str, record: Mapping[str, Any]) -> str | None:
    """A prefix is a source when it names one (and then must resolve), else a literal string."""
    if prefix.startswith("tag:") or prefix in HOSTNAME_SOURCES:
        return _resolve(prefix, record)
    return prefix


def hostname_candidates(record: Mapping[str, Any], rules: Sequence[HostnameRule]) -> list[str]:
    """The names ``rules`` give this record, in order of preference (entries that resolve only)."""
    names: list[str] = []
    for rule in rules:
        name = _resolve(rule.name, record)
        if name is None:
            continue
        if rule.prefix:
            prefix = _prefix_value(rule.prefix, record)
            if prefix is None:
                continue
            name = f"{prefix}{rule.separator}{name}"
        if name not in names:
            names.append(name)
    return names


@dataclass
class Naming:
    """The result of :func:`assign_hostnames`: ``hosts`` in order, plus what needed a fallback."""

    hosts: list[tuple[str, dict[str, Any]]]
    unnamed: list[str]
    """Instance ids no ``hostnames`` entry could name; they are listed under their instance id."""
    collisions: list[tuple[str, str]]
    """``(name, instance id)``: the name was already taken, so a later entry or the id was used."""


def assign_hostnames(records: Iterable[dict[str, Any]], rules: Sequence[HostnameRule]) -> Naming:
    """Give every record a unique inventory host name.

    Records are visited in (region, instance id) order, so the result is deterministic. Each gets
    the first candidate not taken yet. A record without any candidate, or whose candidates are all
    taken, is named by its instance id: listing every reachable instance matters more than honouring
    a name rule, and two instances must never share one inventory host (their variables would mix).
    """
    naming = Naming(hosts=[], unnamed=[], collisions=[])
    taken: set[str] = set()
    for record in sorted(records, key=lambda r: (r["region"], r["instance_id"])):
        candidates = hostname_candidates(record, rules)
        chosen = next((name for name in candidates if name not in taken), None)
        if chosen is None:
            chosen = record["instance_id"]
            if candidates:
                naming.collisions.append((candidates[0], chosen))
            else:
                naming.unnamed.append(chosen)
            if chosen in taken:  # another host was *named* like this instance id; stay unique
                chosen = f"{chosen}_{record['region']}"
        elif chosen != candidates[0]:
            naming.collisions.append((candidates[0], record["instance_id"]))
        taken.add(chosen)
        naming.hosts.append((chosen, record))
    return naming


# --------------------------------------------------------------------------------------------
# Connection variables
# --------------------------------------------------------------------------------------------


def check_os_user_map(value: Any) -> dict[str, str]:
    """Validate ``os_user_map``: platform name (prefix, any case, or ``*``) to OS user ('' = none)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise OptionError(
            "os_user_map", f"must be a dictionary of platform name to OS user, got {type(value).__name__}"
        )
    out: dict[str, str] = {}
    for key, user in value.items():
        if not isinstance(key, str) or not key.strip():
            raise OptionError("os_user_map", f"platform names must be non-empty strings, got {key!r}")
        if user is not None and not isinstance(user, str):
            raise OptionError("os_user_map", f"the user for {key!r} must be a string, got {user!r}")
        out[key.strip().lower()] = user or ""
    return out


def default_os_user(platform_name: str | None, user_map: Mapping[str, str] | None = None) -> str | None:
    """The OS user for a platform: ``os_user_map`` first, then :data:`DEFAULT_OS_USERS`.

    Keys match the start of SSM's PlatformName ignoring case, longest key first ("Red Hat Enterprise
    Linux" covers "Red Hat Enterprise Linux Server"); ``*`` in ``os_user_map`` matches anything. An
    empty user means "do not set ansible_user" (the play's ``remote_user`` then applies).
    """
    name = (platform_name or "").strip().lower()
    for table in (user_map or {}, DEFAULT_OS_USERS):
        for key in sorted(table, key=len, reverse=True):
            if key != "*" and name.startswith(key):
                return table[key] or None
        if "*" in table:
            return table["*"] or None
    return None


def connection_vars(record: Mapping[str, Any], user: str | None) -> dict[str, Any]:
    """The variables that make ``trek10.ec2ssm.ssm_ssh`` reach this host with no other host vars."""
    out: dict[str, Any] = {
        "ansible_connection": CONNECTION_PLUGIN,
        "ansible_host": record["instance_id"],
        REGION_VAR: record["region"],
    }
    if not record.get("eic_capable", True):
        out[EIC_PUSH_VAR] = False
    if user:
        out["ansible_user"] = user
    return out
