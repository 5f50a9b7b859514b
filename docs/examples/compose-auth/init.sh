#!/bin/sh
# The init service of docker-compose.auth.yml (the pcm image, as root): makes
# what the cluster and the admins need before the members start, each piece
# only when absent, so that every docker compose up keeps what is there.
#
#   $AUTHORITY  the authority (pcm broker init-auth): the operator, the system
#               and pcm accounts, issuer.json and admin.creds. Secret: mounted
#               by the admin services only (provision, controller, enroll-*,
#               and the pcm tool).
#   $OPERATOR   the publishers' signing key, signing.nk (pcm keys new), and
#               whatever the pcm tool writes (its working directory). Secret.
#   $PUBLIC     auth.conf (pcm broker nats-config), which every member
#               includes, and trusted.keys, the signing key's public half,
#               which pcm enroll gives every client. No secret.
#
# Run as root because it fills several volumes; it gives the secret ones to
# the image's pcm user, which the other services run as.
# integration/compose_auth_test.go runs this script with the pcm binary.
set -eu
: "${AUTHORITY:?the authority directory}" "${OPERATOR:?the operator directory}" "${PUBLIC:?the public directory}"

if [ -e "$AUTHORITY/operator.jwt" ]; then
	echo "init: keeping the authority in $AUTHORITY"
else
	pcm broker init-auth --auth-dir "$AUTHORITY"
fi
# Made again every time: it follows the authority's JWTs.
pcm broker nats-config --auth-dir "$AUTHORITY" >"$PUBLIC/auth.conf.new"
mv "$PUBLIC/auth.conf.new" "$PUBLIC/auth.conf"

if [ -e "$OPERATOR/signing.nk" ]; then
	echo "init: keeping the signing key $OPERATOR/signing.nk"
else
	pcm keys new --out "$OPERATOR/signing.nk" >/dev/null
	echo "init: made the publishers' signing key $OPERATOR/signing.nk"
fi
pcm keys public "$OPERATOR/signing.nk" >"$PUBLIC/trusted.keys.new"
mv "$PUBLIC/trusted.keys.new" "$PUBLIC/trusted.keys"

if [ "$(id -u)" = 0 ] && id -u pcm >/dev/null 2>&1; then
	chown -R pcm:pcm "$AUTHORITY" "$OPERATOR"
fi
