# Copyright: Contributors to the trek10.ec2ssm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: ssm_instances
short_description: EC2 instances that AWS Systems Manager can reach, ready for the ssm_ssh connection
version_added: 0.1.0
author:
  - Trek10 (@trek10inc)
description:
  - Lists the managed nodes that AWS Systems Manager (SSM) can reach right now, selected by tags, and
    sets the connection variables so that a playbook reaches them through
    R(trek10.ec2ssm.ssm_ssh,ansible_collections.trek10.ec2ssm.ssm_ssh_connection) with no host
    variables anywhere.
  - The source of truth is C(ssm:DescribeInstanceInformation) (paginated, tag filters sent to AWS),
    joined with C(ec2:DescribeInstances) in batches of instance ids (never one call per host).
  - By default only C(Online) EC2 instances are listed; O(include_offline) and O(include_hybrid) widen that.
  - The options follow M(amazon.aws.aws_ec2) where they make sense (O(regions), O(filters),
    O(include_filters), O(exclude_filters), O(hostnames), O(hostvars_prefix), O(strict_permissions),
    C(compose), C(groups), C(keyed_groups), the cache options and O(assume_role_arn)).
  - The inventory file must end with C(ssm_instances.yml) or C(ssm_instances.yaml).
notes:
  - "IAM permissions needed: C(ssm:DescribeInstanceInformation) and C(ec2:DescribeInstances);
    with O(include_hybrid=true) also C(ssm:ListTagsForResource) (one call per hybrid node, for its tags);
    with O(assume_role_arn), C(sts:AssumeRole) on that role."
  - Unlike M(amazon.aws.aws_ec2), O(regions) defaults to the configured region only, not every region.
  - "Host variables set per host: C(instance_id), C(region), C(availability_zone), C(resource_type),
    C(eic_capable), C(ping_status), C(last_ping_time), C(agent_version), C(platform_name),
    C(platform_type), C(platform_version), C(computer_name), C(private_ip_address),
    C(private_dns_name), C(instance_type), C(instance_state), C(launch_time), C(image_id),
    C(architecture), C(vpc_id), C(subnet_id), C(iam_instance_profile) (C(arn), C(id)), C(iam_role)
    and C(ec2_tags) (the tags as a dictionary; the reserved name C(tags) is not used). EC2-only
    values are null for hybrid nodes. O(hostvars_prefix) and O(hostvars_suffix) rename all of them."
  - Values that come from AWS (tags above all) are never treated as templates.
  - With caching on, the cache entry also records the query options (regions, tags, filters, ...), so
    changing them fetches fresh data; changing O(hostnames), C(compose), C(keyed_groups) or
    O(os_user_map) is applied to the cached data without calling AWS.
extends_documentation_fragment:
  - inventory_cache
  - constructed
  - amazon.aws.boto3
  - amazon.aws.common.plugins
  - amazon.aws.region.plugins
  - amazon.aws.assume_role.plugins
options:
  session_token:
    description:
      - AWS STS session token for use with temporary credentials.
      - Read from E(AWS_SESSION_TOKEN) and also from E(AWS_SECURITY_TOKEN), the only name AWX's
        Amazon Web Services credential sets in older AWX versions (the connection plugin reads
        both names too).
    env:
      - name: AWS_SECURITY_TOKEN
      - name: AWS_SESSION_TOKEN
  plugin:
    description: The name of this plugin; it must always be set to V(trek10.ec2ssm.ssm_instances).
    required: true
    type: str
    choices: [trek10.ec2ssm.ssm_instances]
  regions:
    description:
      - The regions to list managed nodes in.
      - If empty (the default), only the configured region is used (O(region), E(AWS_REGION) or the
        profile's region), never every region.
    type: list
    elements: str
    default: []
  tags:
    description:
      - Select nodes by tag. Each key is a tag key; its value is one value or a list of values (any of them).
      - Keys are ANDed, and the selection applies on top of O(filters) and every O(include_filters) entry.
      - Sent to AWS as C(tag:<key>) filters of C(ssm:DescribeInstanceInformation). Values compare
        exactly (no wildcards). Quote values that YAML would read as booleans (V('true')).
    type: dict
    default: {}
  filters:
    description:
      - A dictionary of filter name to a value or a list of values, as in M(amazon.aws.aws_ec2).
      - "SSM filters: C(tag:<key>), C(tag-key), C(ping-status) (default V(Online)), C(resource-type)
        (default V(EC2Instance)), C(platform-type), C(agent-version), C(iam-role), C(association-status),
        C(activation-id) and C(instance-id)."
      - Any other name is an C(ec2:DescribeInstances) filter (for example C(instance-type), C(vpc-id),
        C(subnet-id), C(availability-zone), C(image-id), C(instance-state-name)), evaluated by EC2 for the
        instances SSM returned. Hybrid nodes never match an EC2 filter.
    type: dict
    default: {}
  include_filters:
    description:
      - A list of filter dictionaries like O(filters). A node is listed if it matches O(filters) or at
        least one entry (and O(tags)).
      - Each entry is one more C(ssm:DescribeInstanceInformation) listing, so keep the list short.
    type: list
    elements: dict
    default: []
  exclude_filters:
    description:
      - A list of filter dictionaries like O(filters). A node matching any entry is not listed; this
        wins over O(filters) and O(include_filters).
      - Tag and SSM filters are checked on the data already fetched; an entry with EC2 filters costs
        C(ec2:DescribeInstances) calls for the candidate instances.
    type: list
    elements: dict
    default: []
  include_offline:
    description:
      - Also list nodes whose SSM ping status is not V(Online) (V(ConnectionLost), V(Inactive)).
      - They are listed with their C(ping_status); connecting to them fails until SSM reaches them again.
      - Ignored for a filter set that names C(ping-status) itself.
    type: bool
    default: false
  include_hybrid:
    description:
      - Also list hybrid (C(mi-*)) managed nodes, registered with an SSM activation outside EC2.
      - They carry C(eic_capable=false) and C(resource_type=ManagedInstance), because EC2 Instance Connect
        cannot push keys to them; the ssm_ssh connection then needs a key the node already trusts.
      - Ignored for a filter set that names C(resource-type) itself.
    type: bool
    default: false
  hostnames:
    description:
      - Inventory host name sources, in order of preference; the first one that gives a name not taken
        by another host is used.
      - "Sources: V(instance-id) (the default), V(tag:<key>) (for example V(tag:Name)),
        V(private-ip-address) (alias V(private-ip)), V(private-dns-name) and V(computer-name)."
      - An entry can be a dictionary with O(hostnames.name), O(hostnames.prefix) and O(hostnames.separator).
      - A host that no entry can name (or whose names are all taken) is listed under its instance id,
        with a warning, so that two instances never share one inventory host.
    type: list
    elements: raw
    default: [instance-id]
    suboptions:
      name:
        description: A host name source, as listed above.
        type: str
        required: true
      prefix:
        description:
          - A source (as for O(hostnames.name)) or, if it is not one, a literal string put before the name.
          - If the source gives no value, this entry is skipped.
        type: str
        default: ''
      separator:
        description: Put between O(hostnames.prefix) and O(hostnames.name).
        type: str
        default: _
  hostvars_prefix:
    description: Put in front of the name of every host variable that comes from AWS.
    type: str
    default: ''
  hostvars_suffix:
    description: Put after the name of every host variable that comes from AWS.
    type: str
    default: ''
  strict_permissions:
    description:
      - If V(true) (the default), an AWS call that is denied fails the inventory, with a message naming
        the IAM action and the region.
      - If V(false), a denied call is skipped with a warning; a region where listing nodes is denied is
        skipped, and hosts of a region where C(ec2:DescribeInstances) is denied are listed without EC2 details
        (and match no EC2 filter).
    type: bool
    default: true
  set_connection_vars:
    description:
      - Set C(ansible_connection=trek10.ec2ssm.ssm_ssh), C(ansible_host) (the instance id),
        C(ansible_ec2ssm_region) and C(ansible_user) (see O(os_user_map)) for every host.
      - For hybrid nodes also C(ansible_ec2ssm_eic_push=false), since EC2 Instance Connect cannot push
        keys to them; the connection then authenticates with a key the node already trusts.
      - These are inventory variables, so C(group_vars), C(host_vars) and C(compose) can still override them.
    type: bool
    default: true
  os_user_map:
    description:
      - OS user (C(ansible_user)) by SSM platform name. Keys match the start of C(platform_name),
        ignoring case, longest key first; V(*) matches any platform. An empty value sets no user (the
        play's C(remote_user) then applies).
      - Consulted before the built-in map, which covers the official AMIs' default users - Amazon Linux
        V(ec2-user), Ubuntu V(ubuntu), Debian V(admin), Red Hat, SUSE, Oracle Linux, AlmaLinux and FreeBSD
        V(ec2-user), CentOS V(centos), Fedora V(fedora) and Rocky Linux V(rocky).
    type: dict
    default: {}
"""

EXAMPLES = r"""
# demo.ssm_instances.yml - every Online instance tagged Environment=demo in the configured region,
# reachable with `ansible-playbook -i demo.ssm_instances.yml site.yml` and no other settings.
plugin: trek10.ec2ssm.ssm_instances
tags:
  Environment: demo

---

# Two regions, two tag values (ORed) ANDed with a second tag, named by their Name tag.
plugin: trek10.ec2ssm.ssm_instances
regions:
  - us-east-1
  - us-west-2
tags:
  Environment: [staging, production]
  Team: payments
hostnames:
  - tag:Name
  - instance-id

---

# Groups out of the box: by tag, platform and region.
plugin: trek10.ec2ssm.ssm_instances
keyed_groups:
  # tag_Role_web, tag_Environment_production, ...
  - key: ec2_tags
    prefix: tag
  # role_web, role_db (only the Role tag)
  - key: ec2_tags.Role | default('none')
    prefix: role
  # platform_Ubuntu, platform_Amazon_Linux
  - key: platform_name
    prefix: platform
  # region_us_east_1
  - key: region
    prefix: region
groups:
  # every instance launched from one AMI
  golden_image: image_id == 'ami-0123456789abcdef0'
compose:
  # keep the instance id as ansible_host but talk to it under another user on one platform
  ansible_user: "'admin' if platform_name.startswith('Debian') else ansible_user"

---

# aws_ec2-style filters: SSM filters go to SSM, the others to ec2:DescribeInstances.
plugin: trek10.ec2ssm.ssm_instances
filters:
  tag:Environment: production
  platform-type: Linux
  instance-type: [t3.small, t3.medium]
exclude_filters:
  - tag:Maintenance: 'true'
# also list offline nodes and hybrid (mi-*) nodes; they are marked by ping_status and eic_capable
include_offline: true
include_hybrid: true
strict_permissions: false

---

# Another account, cached for 10 minutes, own users for a custom AMI.
plugin: trek10.ec2ssm.ssm_instances
assume_role_arn: arn:aws:iam::123456789012:role/ansible-inventory
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/ansible-inventory
cache_timeout: 600
os_user_map:
  Acme Linux: acme
hostvars_prefix: aws_
"""

import json
from dataclasses import dataclass
from typing import Any

try:
    import botocore.exceptions
except ImportError:
    HAS_BOTOCORE = False  # amazon.aws's require_aws_sdk() reports it when the plugin is used
else:
    HAS_BOTOCORE = True

from ansible.errors import AnsibleError, AnsibleParserError
from ansible_collections.amazon.aws.plugins.plugin_utils.inventory import AWSInventoryBase

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.aws.errors import (
    AwsCallError,
    from_client_error,
    from_transport_error,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.inventory_records import (
    EC2_FILTER_VALUES_PER_CALL,
    RECORD_VERSION,
    SSM_PAGE_SIZE,
    FilterSet,
    HostnameRule,
    OptionError,
    assign_hostnames,
    check_os_user_map,
    check_regions,
    chunks,
    connection_vars,
    default_os_user,
    host_record,
    hostvars,
    is_hybrid,
    parse_hostnames,
    query_plan,
)


@dataclass(frozen=True)
class _Settings:
    """The checked options; ``query_key`` identifies the AWS query for the cache."""

    regions: list[str]
    includes: list[FilterSet]
    excludes: list[FilterSet]
    hostnames: tuple[HostnameRule, ...]
    os_user_map: dict[str, str]
    query_key: str


class _Denied(Exception):
    """A denied call that strict_permissions=false says to skip (already warned about)."""


class InventoryModule(AWSInventoryBase):
    NAME = "trek10.ec2ssm.ssm_instances"
    INVENTORY_FILE_SUFFIXES = ("ssm_instances.yml", "ssm_instances.yaml")

    class TemplatedOptions(AWSInventoryBase.TemplatedOptions):
        """amazon.aws's option templating, extended to our filter options.

        ``get`` is re-implemented because amazon.aws 10.x passes ``disable_lookups`` to
        ``Templar.template``, which ansible-core 2.19+ reports as deprecated on every use.
        """

        TEMPLATABLE_OPTIONS = (
            *AWSInventoryBase.TemplatedOptions.TEMPLATABLE_OPTIONS,
            "tags",
            "include_filters",
            "exclude_filters",
        )

        def get(self, *args: Any) -> Any:
            value = self.original_options.get(*args)
            if not value or not self.templar or args[0] not in self.TEMPLATABLE_OPTIONS:
                return value
            return self.templar.template(value)

    # ------------------------------------------------------------------ entry point

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache=cache)
        try:
            settings = self._settings()
        except OptionError as e:
            raise AnsibleParserError(f"{self.NAME}: {e}") from None

        records: list[dict[str, Any]] | None = None
        hit, cached = self.get_cached_result(path, cache)
        if hit and isinstance(cached, dict) and cached.get("query") == settings.query_key:
            records = cached.get("hosts")
            self.display.vvv(f"{self.NAME}: {len(records or [])} hosts from the inventory cache")
        if not isinstance(records, list):
            records = self._query(settings)
            if self.get_option("cache"):
                # Written directly (not update_cached_result): an entry for other options must be replaced.
                self._cache[self.get_cache_key(path)] = {"query": settings.query_key, "hosts": records}
        self._populate(records, settings)

    def _settings(self) -> _Settings:
        regions = check_regions(self.get_option("regions"))
        if not regions:
            region = self.region
            if not region:
                raise OptionError(
                    "regions",
                    "no region is configured; set 'regions' (or 'region') in the inventory file, "
                    "or AWS_REGION, or a region in the AWS profile",
                )
            regions = check_regions([region])
        includes, excludes = query_plan(
            tags=self.get_option("tags"),
            filters=self.get_option("filters"),
            include_filters=self.get_option("include_filters"),
            exclude_filters=self.get_option("exclude_filters"),
            include_offline=self.get_option("include_offline"),
            include_hybrid=self.get_option("include_hybrid"),
        )
        for n, entry in enumerate(includes + excludes):
            if entry.ec2_value_count() >= EC2_FILTER_VALUES_PER_CALL:
                raise OptionError(
                    "filters",
                    f"filter set {n} has {entry.ec2_value_count()} EC2 filter values; "
                    f"EC2 accepts fewer than {EC2_FILTER_VALUES_PER_CALL} per request here",
                )
        query = {
            "v": RECORD_VERSION,
            "regions": regions,
            "includes": [repr(entry) for entry in includes],
            "excludes": [repr(entry) for entry in excludes],
            "account": [self.get_option(name) for name in ("assume_role_arn", "profile", "endpoint_url")],
        }
        return _Settings(
            regions=regions,
            includes=includes,
            excludes=excludes,
            hostnames=parse_hostnames(self.get_option("hostnames")),
            os_user_map=check_os_user_map(self.get_option("os_user_map")),
            query_key=json.dumps(query, sort_keys=True, default=str),
        )

    # ------------------------------------------------------------------ AWS

    def _query(self, settings: _Settings) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for region in settings.regions:
            try:
                records.extend(self._query_region(region, settings))
            except _Denied:
                continue
        return records

    def _query_region(self, region: str, settings: _Settings) -> list[dict[str, Any]]:
        ssm = self.client("ssm", region=region)
        ec2 = self.client("ec2", region=region)
        listings: dict[str, list[dict[str, Any]]] = {}
        included: dict[str, dict[str, Any]] = {}
        details: dict[str, dict[str, Any]] = {}
        described: set[str] = set()
        ec2_usable = True
        for entry in settings.includes:
            request = entry.ssm_request_filters()
            key = json.dumps(request, sort_keys=True)
            if key not in listings:
                listings[key] = self._describe_instance_information(ssm, region, request)
            nodes = [info for info in listings[key] if entry.matches_ssm(info)]
            ec2_ids = [info["InstanceId"] for info in nodes if not is_hybrid(info)]
            if entry.ec2:
                if not ec2_usable:
                    continue
                try:
                    matched = self._describe_instances(ec2, region, ec2_ids, entry)
                except _Denied:
                    ec2_usable = False
                    continue
                details.update(matched)
                nodes = [info for info in nodes if info["InstanceId"] in matched]
            elif ec2_usable:
                todo = [iid for iid in ec2_ids if iid not in details and iid not in described]
                described.update(todo)
                try:
                    details.update(self._describe_instances(ec2, region, todo, FilterSet()))
                except _Denied:
                    ec2_usable = False
            for info in nodes:
                included.setdefault(info["InstanceId"], info)

        hybrid_tags = self._hybrid_tags(
            ssm, region, [iid for iid, info in included.items() if is_hybrid(info)]
        )
        records = [
            host_record(info, details.get(iid), region, hybrid_tags.get(iid))
            for iid, info in sorted(included.items())
        ]
        for entry in settings.excludes:
            records = self._exclude(ec2, region, records, entry, ec2_usable)
        self.display.vvv(f"{self.NAME}: {region}: {len(records)} hosts")
        return records

    def _exclude(
        self, ec2: Any, region: str, records: list[dict[str, Any]], entry: FilterSet, ec2_usable: bool
    ) -> list[dict[str, Any]]:
        candidates = [record for record in records if entry.matches_locally(record)]
        drop = {record["instance_id"] for record in candidates}
        if entry.ec2:
            ec2_ids = [record["instance_id"] for record in candidates if record["eic_capable"]]
            try:
                if not ec2_usable:
                    raise _Denied
                drop = set(self._describe_instances(ec2, region, ec2_ids, FilterSet(ec2=entry.ec2)))
            except _Denied:
                # Cannot tell which of them the EC2 filters exclude: leaving all of them out is the
                # safe side (a play never runs on a host the user meant to exclude).
                self.display.warning(
                    f"{self.NAME}: {region}: cannot evaluate the EC2 part of an exclude_filters entry; "
                    f"excluding all {len(drop)} hosts that match its other filters"
                )
        return [record for record in records if record["instance_id"] not in drop]

    def _describe_instance_information(
        self, client: Any, region: str, request_filters: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"PaginationConfig": {"PageSize": SSM_PAGE_SIZE}}
        if request_filters:
            kwargs["Filters"] = request_filters
        nodes: list[dict[str, Any]] = []
        with self._aws_call("ssm", "DescribeInstanceInformation", region):
            for page in client.get_paginator("describe_instance_information").paginate(**kwargs):
                nodes.extend(page.get("InstanceInformationList", []))
        return nodes

    def _describe_instances(
        self, client: Any, region: str, instance_ids: list[str], entry: FilterSet
    ) -> dict[str, dict[str, Any]]:
        """EC2 records of ``instance_ids`` that match ``entry``'s EC2 filters, by instance id.

        The ids go in an ``instance-id`` filter rather than ``InstanceIds``: an id EC2 no longer knows
        (terminated a while ago) then just does not match, instead of failing the whole batch.
        """
        found: dict[str, dict[str, Any]] = {}
        per_call = EC2_FILTER_VALUES_PER_CALL - entry.ec2_value_count()
        paginator = client.get_paginator("describe_instances")
        with self._aws_call("ec2", "DescribeInstances", region):
            for batch in chunks(instance_ids, per_call):
                filters = [{"Name": "instance-id", "Values": batch}, *entry.ec2_request_filters()]
                for page in paginator.paginate(Filters=filters, PaginationConfig={"PageSize": 1000}):
                    for reservation in page.get("Reservations", []):
                        for instance in reservation.get("Instances", []):
                            found[instance["InstanceId"]] = instance
        return found

    def _hybrid_tags(self, client: Any, region: str, node_ids: list[str]) -> dict[str, dict[str, str]]:
        """Tags of hybrid nodes (DescribeInstanceInformation has none, and EC2 does not know them)."""
        tags: dict[str, dict[str, str]] = {}
        for node_id in node_ids:
            try:
                with self._aws_call("ssm", "ListTagsForResource", region, target=node_id):
                    response = client.list_tags_for_resource(
                        ResourceType="ManagedInstance", ResourceId=node_id
                    )
            except _Denied:
                break
            tags[node_id] = {str(t["Key"]): str(t.get("Value", "")) for t in response.get("TagList", [])}
        return tags

    def _aws_call(self, service: str, operation: str, region: str, target: str | None = None) -> _AwsCall:
        return _AwsCall(self, service, operation, region, target)

    def _aws_failed(self, error: AwsCallError) -> None:
        """Raise the one-sentence error, or warn and raise _Denied when strict_permissions allows."""
        if error.is_access_denied and not self.get_option("strict_permissions"):
            self.display.warning(f"{self.NAME}: {error} (skipped: strict_permissions is false)")
            raise _Denied
        raise AnsibleError(f"{self.NAME}: {error}")

    # ------------------------------------------------------------------ Ansible inventory

    def _populate(self, records: list[dict[str, Any]], settings: _Settings) -> None:
        naming = assign_hostnames(records, settings.hostnames)
        if naming.unnamed:
            self.display.warning(
                f"{self.NAME}: {len(naming.unnamed)} host(s) got no name from 'hostnames' and are listed "
                f"under their instance id: {', '.join(naming.unnamed[:5])}{' ...' if len(naming.unnamed) > 5 else ''}"
            )
        if naming.collisions:
            # One warning, not one per host: an Auto Scaling group gives hundreds the same Name tag.
            examples = ", ".join(f"{iid} ({name!r})" for name, iid in naming.collisions[:5])
            more = " ..." if len(naming.collisions) > 5 else ""
            self.display.warning(
                f"{self.NAME}: {len(naming.collisions)} host(s) got a name from 'hostnames' that another "
                f"host already has, and are listed under a later source or their instance id: {examples}{more}"
            )
        prefix = self.get_option("hostvars_prefix") or ""
        suffix = self.get_option("hostvars_suffix") or ""
        set_connection = self.get_option("set_connection_vars")
        strict = self.get_option("strict")
        compose = self.get_option("compose")
        groups = self.get_option("groups")
        keyed_groups = self.get_option("keyed_groups")
        for name, record in naming.hosts:
            variables = hostvars(record, prefix, suffix)
            if set_connection:
                user = default_os_user(record.get("platform_name"), settings.os_user_map)
                variables.update(connection_vars(record, user))
            self.inventory.add_host(name)
            for key, value in variables.items():
                self.inventory.set_variable(name, key, value)
            self._set_composite_vars(compose, variables, name, strict=strict)
            self._add_host_to_composed_groups(groups, variables, name, strict=strict)
            self._add_host_to_keyed_groups(keyed_groups, variables, name, strict=strict)


class _AwsCall:
    """Context manager: botocore failures inside become one sentence (aws/errors.py) or a skip."""

    def __init__(
        self, plugin: InventoryModule, service: str, operation: str, region: str, target: str | None
    ) -> None:
        self._plugin = plugin
        self._service = service
        self._operation = operation
        self._region = region
        self._target = target

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, (_Denied, AnsibleError)):
            return False
        if isinstance(exc, botocore.exceptions.ClientError):
            self._plugin._aws_failed(
                from_client_error(exc, service=self._service, target=self._target, region=self._region)
            )
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            self._plugin._aws_failed(
                from_transport_error(
                    exc,
                    service=self._service,
                    operation=self._operation,
                    target=self._target,
                    region=self._region,
                )
            )
        return False
