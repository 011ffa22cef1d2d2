#!/bin/sh
# Namespace + search attributes for Nightlab, run by the temporal-namespace job
# (temporalio/admin-tools image, `temporal` CLI) once the server is healthy. Idempotent:
# creates the namespace or updates its retention, and registers only missing attributes.
#
#   TEMPORAL_ADDRESS              frontend host:port (temporal:7233)
#   NAMESPACE                     namespace the workers use (default)
#   NAMESPACE_RETENTION           closed-workflow retention, a Go duration (720h = 30 days)
#   NIGHTLAB_SEARCH_ATTRIBUTES    space-separated Name=Type pairs
#   SEARCH_ATTRIBUTE_CACHE_WAIT_S after registering something new, wait this long so every
#                                 server cache sees it before the workers start (default 65)
set -eu

: "${TEMPORAL_ADDRESS:=temporal:7233}"
: "${NAMESPACE:=default}"
: "${NAMESPACE_RETENTION:=720h}"
: "${NIGHTLAB_SEARCH_ATTRIBUTES:?set NIGHTLAB_SEARCH_ATTRIBUTES (Name=Type ...)}"
: "${SEARCH_ATTRIBUTE_CACHE_WAIT_S:=65}"

host=${TEMPORAL_ADDRESS%:*}
port=${TEMPORAL_ADDRESS##*:}
# Resolve to IPv4: the CLI may otherwise try an IPv6 address the server doesn't bind.
ip=$(getent ahostsv4 "$host" 2>/dev/null | awk 'NR == 1 { print $1 }') || ip=
if [ -n "$ip" ]; then TEMPORAL_ADDRESS="${ip}:${port}"; fi
export TEMPORAL_ADDRESS

echo "waiting for Temporal at ${TEMPORAL_ADDRESS}..."
i=0
until temporal operator cluster health >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -ge 60 ]; then echo "Temporal server at ${TEMPORAL_ADDRESS} is not healthy" >&2; exit 1; fi
  sleep 2
done

changed=0
if temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
  echo "namespace ${NAMESPACE} exists; setting retention ${NAMESPACE_RETENTION}"
  temporal operator namespace update --namespace "$NAMESPACE" --retention "$NAMESPACE_RETENTION"
else
  echo "creating namespace ${NAMESPACE} (retention ${NAMESPACE_RETENTION})"
  temporal operator namespace create --namespace "$NAMESPACE" --retention "$NAMESPACE_RETENTION"
  changed=1
  # The namespace registry refreshes every ~10s; search attributes need the namespace.
  i=0
  until temporal operator search-attribute list --namespace "$NAMESPACE" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -ge 30 ]; then echo "namespace ${NAMESPACE} did not become visible" >&2; exit 1; fi
    sleep 2
  done
fi

existing=$(temporal operator search-attribute list --namespace "$NAMESPACE")
for pair in $NIGHTLAB_SEARCH_ATTRIBUTES; do
  name=${pair%%=*}
  type=${pair#*=}
  if printf '%s\n' "$existing" | grep -qw -- "$name"; then
    echo "search attribute ${name} already registered"
    continue
  fi
  echo "registering search attribute ${name} (${type})"
  if ! temporal operator search-attribute create --namespace "$NAMESPACE" --name "$name" --type "$type"; then
    # Lost a race with another setup run? Accept it if it's there now.
    temporal operator search-attribute list --namespace "$NAMESPACE" | grep -qw -- "$name" || exit 1
  fi
  changed=1
done

if [ "$changed" -eq 1 ] && [ "$SEARCH_ATTRIBUTE_CACHE_WAIT_S" -gt 0 ]; then
  echo "waiting ${SEARCH_ATTRIBUTE_CACHE_WAIT_S}s for server caches to pick up the changes"
  sleep "$SEARCH_ATTRIBUTE_CACHE_WAIT_S"
fi

temporal operator search-attribute list --namespace "$NAMESPACE"
echo "namespace ${NAMESPACE} is ready for Nightlab"
