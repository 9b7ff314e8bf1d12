"""Everything HTTP: routes, middleware, feeds, the JSON API, CalDAV, the booking form,
status and metrics pages, request guards, templates and static files."""
