"""Who may do what to a bucket or container that is not theirs: S3's ACLs and bucket policies, Swift's ACLs.

The owner of a bucket (the account that created it) may do anything with it.  Anyone
else, another account or an *anonymous* request that carries no signature at all, needs
a grant:

* an **ACL** (access control list) on the bucket or on an object: grants of READ, WRITE,
  READ_ACP, WRITE_ACP or FULL_CONTROL to a *grantee* (an account, or the groups
  ``AllUsers`` = everyone and ``AuthenticatedUsers`` = anyone signed).  *Canned* ACLs
  name common lists: ``public-read`` grants READ to AllUsers.
* a **bucket policy**: a JSON document of statements ``{"Effect": "Allow"|"Deny",
  "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket/*"}``.
  An explicit Deny always wins; otherwise an Allow from the policy or the ACL grants.

Swift says the same with two container headers: ``X-Container-Read`` and
``X-Container-Write`` hold comma-separated grantees: ``account:user``, ``account``, or
referrer rules ``.r:*`` (anyone, even without a token), ``.r:.example.com`` (requests whose
``Referer`` is from there), ``.r:-host`` (not from there); ``.rlistings`` lets those
referrers list the container too.  An account's ``X-Account-Access-Control`` JSON grants
``read-only``, ``read-write`` or ``admin`` over the whole account.
"""

import fnmatch
import json
import re
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
GROUPS = {ALL_USERS: "AllUsers", AUTHENTICATED_USERS: "AuthenticatedUsers"}
PERMISSIONS = ("READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL")
XSI = "http://www.w3.org/2001/XMLSchema-instance"

# canned ACL -> grants besides the owner's FULL_CONTROL
CANNED = {
    "private": [],
    "public-read": [("Group", ALL_USERS, "READ")],
    "public-read-write": [("Group", ALL_USERS, "READ"), ("Group", ALL_USERS, "WRITE")],
    "authenticated-read": [("Group", AUTHENTICATED_USERS, "READ")],
    "bucket-owner-read": [],
    "bucket-owner-full-control": [],
    "aws-exec-read": [],
    "log-delivery-write": [],
}
GRANT_HEADERS = {"x-amz-grant-read": "READ", "x-amz-grant-write": "WRITE", "x-amz-grant-read-acp": "READ_ACP",
                 "x-amz-grant-write-acp": "WRITE_ACP", "x-amz-grant-full-control": "FULL_CONTROL"}

# which ACL permission an S3 action needs: on the bucket's ACL, or on the object's
BUCKET_PERMISSION = {"s3:ListBucket": "READ", "s3:ListBucketVersions": "READ",
                     "s3:ListBucketMultipartUploads": "READ", "s3:PutObject": "WRITE",
                     "s3:DeleteObject": "WRITE", "s3:DeleteObjectVersion": "WRITE",
                     "s3:GetBucketAcl": "READ_ACP", "s3:PutBucketAcl": "WRITE_ACP"}
OBJECT_PERMISSION = {"s3:GetObject": "READ", "s3:GetObjectVersion": "READ", "s3:GetObjectAcl": "READ_ACP",
                     "s3:PutObjectAcl": "WRITE_ACP", "s3:GetObjectTagging": "READ",
                     "s3:GetObjectAttributes": "READ"}


class AccessError(Exception):
    """A malformed ACL or policy: the S3 error code and what was wrong.

    Args:
        code: ``MalformedACLError``, ``InvalidArgument``, ``MalformedPolicy`` ...
        message: what was wrong, naming the offending part.
    """

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------------- S3 ACLs

def canned_acl(name):
    """The ACL (a dict with ``grants``) for a canned ACL name.

    Raises:
        AccessError: InvalidArgument for a name S3 does not define.
    """
    if name not in CANNED:
        raise AccessError("InvalidArgument", f"x-amz-acl {name!r} is not a canned ACL: use one of "
                          + ", ".join(CANNED))
    return {"canned": name, "grants": [list(g) for g in CANNED[name]]}


def _grantee(text, known_accounts):
    kind, _, value = text.strip().partition("=")
    kind, value = kind.strip().lower(), value.strip().strip('"')
    if kind == "uri":
        if value not in GROUPS:
            raise AccessError("InvalidArgument", f"unknown grantee group {value!r}: use {ALL_USERS} or "
                              f"{AUTHENTICATED_USERS}")
        return ("Group", value)
    if kind == "id":
        if value not in known_accounts:
            raise AccessError("InvalidArgument", f"Invalid id: no account {value!r} in this object store")
        return ("CanonicalUser", value)
    if kind == "emailaddress":
        raise AccessError("UnresolvableGrantByEmailAddress",
                          f"The email address you provided does not match any account on record: {value}")
    raise AccessError("InvalidArgument", f"grantee {text.strip()!r} is not id=..., uri=... or emailAddress=...")


def acl_from_headers(headers, known_accounts):
    """The ACL a request sets with ``x-amz-acl`` or ``x-amz-grant-*`` headers, or None if it sets none.

    Args:
        headers: the request headers.
        known_accounts: the account ids grants may name.
    Raises:
        AccessError: an unknown canned ACL or grantee, or both kinds of header at once.
    """
    grants = []
    for header, permission in GRANT_HEADERS.items():
        for value in headers.getall(header, []) if hasattr(headers, "getall") else [headers.get(header)]:
            if value is None:
                continue
            for part in value.split(","):
                grants.append([*_grantee(part, known_accounts), permission])
    canned = headers.get("x-amz-acl")
    if canned is not None and grants:
        raise AccessError("InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed")
    if canned is not None:
        return canned_acl(canned.strip())
    return {"grants": grants} if grants else None


def acl_from_xml(doc, owner, known_accounts):
    """The ACL of an ``AccessControlPolicy`` document (already parsed).

    Raises:
        AccessError: MalformedACLError for a missing part, InvalidArgument for an
            unknown grantee or permission.
    """
    def local(el):
        return el.tag.rpartition("}")[2]

    grants = []
    lists = [el for el in doc if local(el) == "AccessControlList"]
    if len(lists) != 1:
        raise AccessError("MalformedACLError", "The XML you provided was not well-formed or did not validate "
                          "against our published schema: it needs one <AccessControlList>")
    for grant in lists[0]:
        if local(grant) != "Grant":
            continue
        fields = {local(el): el for el in grant}
        if "Grantee" not in fields or "Permission" not in fields:
            raise AccessError("MalformedACLError", "each <Grant> needs a <Grantee> and a <Permission>")
        permission = (fields["Permission"].text or "").strip()
        if permission not in PERMISSIONS:
            raise AccessError("MalformedACLError", f"permission {permission!r} is not one of "
                              + ", ".join(PERMISSIONS))
        g = {local(el): (el.text or "").strip() for el in fields["Grantee"]}
        kind = fields["Grantee"].get(f"{{{XSI}}}type", "")
        if kind == "Group" or "URI" in g:
            grantee = _grantee(f"uri={g.get('URI', '')}", known_accounts)
        elif kind == "CanonicalUser" or "ID" in g:
            if g.get("ID") == owner:
                continue            # the owner's own FULL_CONTROL is always there
            grantee = _grantee(f"id={g.get('ID', '')}", known_accounts)
        elif kind == "AmazonCustomerByEmail" or "EmailAddress" in g:
            grantee = _grantee(f"emailAddress={g.get('EmailAddress', '')}", known_accounts)
        else:
            raise AccessError("MalformedACLError", "a <Grantee> needs an xsi:type of CanonicalUser, Group or "
                              "AmazonCustomerByEmail")
        grants.append([*grantee, permission])
    return {"grants": grants}


def acl_xml(acl, owner, owner_name):
    """The ``AccessControlPolicy`` document of an ACL (the owner's FULL_CONTROL first)."""
    def grant(kind, who, permission):
        if kind == "Group":
            grantee = f'<Grantee xmlns:xsi="{XSI}" xsi:type="Group"><URI>{escape(who)}</URI></Grantee>'
        else:
            grantee = (f'<Grantee xmlns:xsi="{XSI}" xsi:type="CanonicalUser"><ID>{escape(who)}</ID>'
                       f'<DisplayName>{escape(who)}</DisplayName></Grantee>')
        return f"<Grant>{grantee}<Permission>{permission}</Permission></Grant>"

    grants = [grant("CanonicalUser", owner, "FULL_CONTROL")]
    grants += [grant(*g) for g in (acl or {}).get("grants", [])]
    return (f"<Owner><ID>{escape(owner)}</ID><DisplayName>{escape(owner_name)}</DisplayName></Owner>"
            f"<AccessControlList>{''.join(grants)}</AccessControlList>")


def acl_grants(acl, requester, permission):
    """True when ``acl`` grants ``permission`` to ``requester`` (an account id, or None: anonymous)."""
    for kind, who, granted in (acl or {}).get("grants", []):
        if granted not in (permission, "FULL_CONTROL"):
            continue
        if kind == "Group" and (who == ALL_USERS or (who == AUTHENTICATED_USERS and requester is not None)):
            return True
        if kind == "CanonicalUser" and who == requester:
            return True
    return False


# ---------------------------------------------------------------------------------- bucket policies

ACTION = re.compile(r"^s3:[A-Za-z*?]+$")


def _as_list(value):
    return value if isinstance(value, list) else [value]


def parse_policy(text, bucket):
    """Check a bucket policy document; returns it as a dict.

    Raises:
        AccessError: MalformedPolicy naming what is wrong (not JSON, no statements, an
            unknown effect, a principal, action or resource that does not fit this bucket);
            NotImplemented for conditions, which this store does not evaluate.
    """
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise AccessError("MalformedPolicy", f"Policies must be valid JSON and the first byte must be '{{': "
                          f"{exc}") from None
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise AccessError("MalformedPolicy", "the policy needs a Statement")
    statements = _as_list(doc["Statement"])
    if not statements:
        raise AccessError("MalformedPolicy", "the policy's Statement is empty")
    for i, st in enumerate(statements):
        where = f"statement {st.get('Sid', i)!r}" if isinstance(st, dict) else f"statement {i}"
        if not isinstance(st, dict):
            raise AccessError("MalformedPolicy", f"{where} is not a JSON object")
        if st.get("Effect") not in ("Allow", "Deny"):
            raise AccessError("MalformedPolicy", f"Invalid effect in {where}: {st.get('Effect')!r}; use Allow or Deny")
        if "Principal" not in st:
            raise AccessError("MalformedPolicy", f"{where} has no Principal")
        principal = st["Principal"]
        if principal != "*" and not (isinstance(principal, dict) and set(principal) <= {"AWS", "CanonicalUser"}):
            raise AccessError("MalformedPolicy", f"Invalid principal in {where}: use \"*\" or {{\"AWS\": ...}}")
        if "Condition" in st:
            raise AccessError("NotImplemented", f"{where} has a Condition: bucket policy conditions are not "
                              "implemented by cloudlab's S3 view")
        actions = _as_list(st.get("Action", []))
        if not actions or not all(isinstance(a, str) and ACTION.match(a) for a in actions):
            raise AccessError("MalformedPolicy", f"Policy has invalid action in {where}: {actions!r}")
        resources = _as_list(st.get("Resource", []))
        if not resources:
            raise AccessError("MalformedPolicy", f"{where} has no Resource")
        for r in resources:
            if not isinstance(r, str) or not r.startswith("arn:aws:s3:::"):
                raise AccessError("MalformedPolicy", f"Policy has invalid resource in {where}: {r!r}")
            target = r[len("arn:aws:s3:::"):]
            if not fnmatch.fnmatchcase(bucket, target.split("/", 1)[0]):
                raise AccessError("MalformedPolicy", f"Policy has invalid resource in {where}: {r!r} is not in "
                                  f"bucket {bucket}")
    return doc


def _principal_matches(principal, requester):
    if principal == "*":
        return True
    for value in _as_list(principal.get("AWS", [])) + _as_list(principal.get("CanonicalUser", [])):
        if value == "*":
            return True
        if requester is not None and value in (requester, f"arn:aws:iam::{requester}:root"):
            return True
    return False


def policy_decision(policy, requester, action, resource):
    """"Deny", "Allow" or None: what a bucket policy says about ``requester`` doing ``action`` on ``resource``.

    Args:
        policy: the parsed policy (or None).
        requester: the account id, or None for an anonymous request.
        action: e.g. ``s3:GetObject``.
        resource: ``bucket`` or ``bucket/key``.
    """
    decision = None
    for st in _as_list((policy or {}).get("Statement", [])):
        if not _principal_matches(st["Principal"], requester):
            continue
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _as_list(st["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r[len("arn:aws:s3:::"):]) for r in _as_list(st["Resource"])):
            continue
        if st["Effect"] == "Deny":
            return "Deny"
        decision = "Allow"
    return decision


def s3_allowed(requester, owner, action, bucket, key=None, bucket_acl=None, object_acl=None, policy=None):
    """True when ``requester`` may do ``action`` in ``owner``'s bucket (the owner always may, unless denied).

    Args:
        requester: the signing account, or None (anonymous).
        owner: the bucket's account.
        action: the S3 action, e.g. ``s3:GetObject``.
        bucket, key: the resource.
        bucket_acl, object_acl, policy: what the bucket and object carry.
    """
    resource = bucket if key is None else f"{bucket}/{key}"
    decision = policy_decision(policy, requester, action, resource)
    if decision == "Deny":
        return False
    if requester == owner or decision == "Allow":
        return True
    if action in OBJECT_PERMISSION:
        return acl_grants(object_acl, requester, OBJECT_PERMISSION[action])
    if action in BUCKET_PERMISSION:
        return acl_grants(bucket_acl, requester, BUCKET_PERMISSION[action])
    return False


# ---------------------------------------------------------------------------------- Swift ACLs

def parse_container_acl(value, header):
    """Check an ``X-Container-Read``/``-Write`` value; returns the cleaned list of grantees.

    Raises:
        ValueError: a referrer rule in a write ACL, an empty referrer, or a name with spaces.
    """
    items = [part.strip() for part in value.split(",") if part.strip()]
    for item in items:
        if item.startswith(".r:") or item == ".rlistings":
            if header.lower() == "x-container-write":
                raise ValueError(f"Referrers not allowed in write ACL: {item!r}")
            if item.startswith(".r:") and len(item) == 3:
                raise ValueError(f"No host/domain value after referrer designation in ACL: {item!r}")
        elif item.startswith("."):
            raise ValueError(f"Unknown designator {item!r} in ACL")
        elif " " in item:
            raise ValueError(f"ACL element {item!r} contains a space")
    return items


def _referrer_allowed(referrer, rules):
    host = urlsplit(referrer).hostname or "" if referrer else ""
    allowed = False
    for rule in rules:
        negate = rule.startswith("-")
        pattern = rule[1:] if negate else rule
        if pattern == "*" or (pattern.startswith(".") and (host.endswith(pattern) or host == pattern[1:])) \
                or host == pattern:
            allowed = not negate
    return allowed


def groups_of(identity):
    """The names an ACL may grant a token's user by: ``account:user``, ``account`` and ``AUTH_account``."""
    if identity is None:
        return set()
    storage_account, login = identity
    return {login, login.partition(":")[0], storage_account}


def swift_acl_allows(items, identity, referrer, listing=False):
    """True when a container ACL admits this request.

    Args:
        items: the ACL's grantees (``parse_container_acl``).
        identity: ``(storage account, "account:user")`` of a token's user, or None (no token).
        referrer: the request's Referer header, or None.
        listing: the request lists the container (needs ``.rlistings`` for referrers).
    """
    groups = groups_of(identity)
    for item in items:
        if item in groups or (groups and (item == "*" or item == "*:*"
                                          or (item.endswith(":*") and item[:-2] in groups))):
            return True
    rules = [item[3:] for item in items if item.startswith(".r:")]
    if not rules or (listing and ".rlistings" not in items):
        return False
    return _referrer_allowed(referrer, rules)


ACCOUNT_ACL_LEVELS = ("read-only", "read-write", "admin")


def parse_account_acl(value):
    """Check an ``X-Account-Access-Control`` JSON value; returns ``{level: [grantee, ...]}``.

    Raises:
        ValueError: not JSON, an unknown level, or a level that is not a list of strings.
    """
    try:
        doc = json.loads(value)
    except ValueError:
        raise ValueError("X-Account-Access-Control must be JSON, e.g. {\"read-only\": [\"other\"]}") from None
    if not isinstance(doc, dict):
        raise ValueError("X-Account-Access-Control must be a JSON object of access levels")
    for level, who in doc.items():
        if level not in ACCOUNT_ACL_LEVELS:
            raise ValueError(f"unknown access level {level!r} in X-Account-Access-Control: use "
                             + ", ".join(ACCOUNT_ACL_LEVELS))
        if not isinstance(who, list) or not all(isinstance(w, str) for w in who):
            raise ValueError(f"access level {level!r} must be a list of account or account:user names")
    return doc


def account_acl_level(acl, identity):
    """The highest level (``read-only`` < ``read-write`` < ``admin``) an account ACL gives, or None."""
    if identity is None or not acl:
        return None
    groups = groups_of(identity)
    best = None
    for level in ACCOUNT_ACL_LEVELS:
        if any(w in groups for w in acl.get(level, [])):
            best = level
    return best
