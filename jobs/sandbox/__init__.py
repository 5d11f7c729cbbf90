"""A faithful fake of HighLevel's association API, served by a real aiohttp server.

It fakes, over one in-memory store per location:

* the official routes (``/associations/...``: create, paged list, get by key, by object
  key and by id, update labels, delete) and the integration guide's routes
  (``/objects-association...``: create, list, get by key, by object, delete);
* the relation routes (``/associations/relations``: create, list a record's relations, delete)
  over the record ids the sandbox knows per (location, object key), seeded in bulk
  (``records`` in the settings, :meth:`Sandbox.add_records`, ``POST /_sandbox/records``);
  deleting a definition deletes its relations;
* ``GET /objects/`` (standard ``contact``, ``opportunity``, ``business`` plus the
  configured custom objects) and two SYSTEM_DEFINED associations per location,
  ``OPPORTUNITIES_CONTACTS_ASSOCIATION`` and ``BUSINESSES_CONTACTS_ASSOCIATION``;
* agencies (``apps/oauth.json``, ``apps/locations.json``): companies owning sub-accounts
  (each with a name), the app's installations, a company (agency) token per company
  (the first living ``agency_token_lifetime`` seconds, a renewed one a day),
  ``POST /oauth/locationToken`` (form-urlencoded ``companyId``, ``locationId``) minting
  location tokens that expire after ``token_lifetime`` seconds, ``GET /locations/search``
  and ``GET /oauth/installedLocations``; see :mod:`.agency`;
* the ``Version`` header, bearer tokens that each work for one location only (or, the
  agency token, on the agency routes only), scopes of agency and minted tokens, the burst
  and daily rate limits of each resource (a location, or a company) with their
  ``X-RateLimit-*`` headers, and seeded faults: resets, 5xx (sometimes a proxy's HTML
  page), stalls, latency and lost responses (the write is applied, the answer never
  arrives), and rate limits that mislead (a token throttled below what it advertises,
  another client sharing the budget, 429s without rate headers).

Every request goes through these steps, and the first that fails answers:

1. routing: unknown path or method → 404 ``Cannot GET /path`` (nothing else is checked);
2. ``Version: 2021-07-28`` → else 401 ``version header was not found.``;
3. ``Authorization: Bearer <token>`` → missing 401 ``Unauthorized``, unknown or expired 401
   ``Invalid JWT``; a token of the wrong class for the route (the agency token on a
   location's route, a location token on ``/oauth/...``) 401 ``This AuthClass is not yet
   supported``; a scope the route needs (the spec's ``security``) that an agency or minted
   token lacks 401 ``The token is not authorized for this scope.``;
4. rate limits of the token's resource (its location, or its company) → 429 (only admitted
   requests are counted);
5. faults, in this order: reset, 5xx, stall, latency;
6. body parsing (invalid JSON → 400), then the location guard: a ``locationId`` in the
   query or body that is not the token's location → 403 (and counted);
7. validation: query string → 422 (unknown parameters, missing ``skip``/``limit``...),
   body → 400 (missing or non-string fields, unknown properties);
8. the handler: id routes resolve the id (404, or 403 if it belongs to another
   location), object keys must exist (404), a relation's records must be known (422),
   then the duplicate checks;
9. for writes (POST/PUT/DELETE), a lost-response fault drops the connection after the
   change was applied.

Choices where the real service's behaviour is unpublished:

* Burst window: sliding by default, counting admitted requests that arrived in
  ``(now - interval, now]``, or fixed (``window="fixed"``); 429s are not counted. The
  ``throttle_below``, ``contention`` and ``bare_429`` switches make the limits mislead a
  client (see :mod:`jobs.sandbox.limits`). Daily budget: admitted requests per location per
  24 h of ``clock`` since the sandbox was created. ``rate_limit=0`` (no burst limit,
  nothing advertised) omits the three burst headers; ``daily_limit=0`` omits the two daily
  headers.
* Official duplicate key → 400 ``association with key K already exists``; the same object
  pair with the same labels as an existing definition (SYSTEM_DEFINED included) → 400
  ``duplicate pair of labels``; the guide answers both with 409.
* Unknown object key on create → 404 ``Object with key K not found``; by-object routes
  with an unknown object key answer an empty list.
* The list hides a page cap (``page_cap``, 50): a page holds ``min(limit, page_cap)``.
* The guide's ``description`` is accepted and not stored.
* A created relation answers 201 with ``{id, associationId, firstRecordId, secondRecordId,
  firstObjectKey, secondObjectKey, locationId, createdAt}``, bare (the real shape is not
  published; ``relation_status=200`` and ``wrap_relation`` give the 200 and the
  ``{"relation": ...}`` seen in the field). Relation ids are 24 hex digits, ObjectId-like.
* An unknown record → 422 ``Record with id R not found for object K`` (first record first);
  an unknown relation id → 404 ``Relation not found``; a delete answers 200
  ``{"deleted": true, "id": ..., "message": "Relation deleted successfully"}``.
* ``GET /associations/relations/{recordId}`` lists the relations where the record is first
  or second, oldest first, with the list's hidden page cap; an unknown record has none.
  ``associationIds`` is repeated (``associationIds=a&associationIds=b``); a comma list is
  one id, as Express's query parser reads it, so it matches nothing.
* The relation routes' answers carry no ``traceId``.
* A request dropped by a fault is logged with status 0 (the client saw no status).
* Agencies. The spec lists 400, 401 and 422 for ``POST /oauth/locationToken`` and names
  none of the cases; the sandbox answers: a location outside the token's company (or
  unknown) 403 ``The token does not have access to this location.`` (the text the service
  uses for a location token on another location); a ``companyId`` other than the token's
  403 ``The token does not have access to this company.`` (so do the listing routes); a
  location where the app is not installed 400 ``The app is not installed in this
  location.``; a body that is not a form (JSON, say) or lacks a field 422 with NestJS
  messages (``companyId must be a string``). An expired agency or minted token is 401
  ``Invalid JWT`` like an unknown one. A mint answers 200 ``{access_token, token_type,
  expires_in, scope, locationId, userId, appId}``; each mint makes a new token and earlier
  ones stay valid until they expire. ``/locations/search`` takes a location token too (it
  sees its own location only); its ``limit`` defaults to 10, ``installedLocations``'s to
  20, and both pages hold at most ``page_cap``. ``installedLocations`` with an unknown
  ``appId`` is 400 ``App not found``; ``isInstalled=true`` keeps the installed locations,
  otherwise all are listed with their flag. Minting is a write (a lost-response fault may
  mint and drop the answer). Agency tokens start ``agy-``, minted ones ``lat-``,
  private integration tokens ``pit-`` (the error log redacts all three).

Nothing here logs tokens: the request log holds locations and, of the headers, only the
User-Agent (it names the sending process: tests of sharded runs check that no location was
served to two of them); aiohttp's access log is off, and its error log (which quotes
malformed headers) is redacted.

The modules: ``config`` (settings, counters, the request log's entries), ``store``
(locations, objects, definitions, their indexes and the create checks), ``ranked`` (creation
order with positional paging in O(log n)), ``relation_store`` (records, relations, their
indexes and write counts), ``agency`` (companies, installations, minted tokens, who a
token speaks for; step 3), ``limits`` (step 4), ``faults`` (steps 5 and 9), ``validation``
(steps 6 and 7), ``pipeline`` (steps 1 to 9 around each handler), ``endpoints``,
``relation_endpoints`` and ``agency_endpoints`` (the routes and their handlers),
``responses`` (NestJS-shaped answers), ``server`` (:class:`Sandbox`) and ``process``
(:func:`serve`, for the CLI, and :class:`ServeError`).
"""

from __future__ import annotations

from .config import LoggedRequest, SandboxConfig, SandboxStats
from .process import AgencySetup, ServeError, serve
from .server import Sandbox

__all__ = [
    "AgencySetup",
    "LoggedRequest",
    "Sandbox",
    "SandboxConfig",
    "SandboxStats",
    "ServeError",
    "serve",
]
