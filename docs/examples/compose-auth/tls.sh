#!/bin/sh
# The tls service of docker-compose.auth.yml (alpine, as root): makes, once,
# a CA and the one certificate the three nats-server members share. The
# certificate names every member ($NAMES, DNS names) and $IPS, and has both
# the server and the client extended key usages (routes use it both ways).
#
#   $TLS_DIR  ca.pem, server.pem, server-key.pem (0600): the members' (tls volume)
#   $PUBLIC   ca.pem, for every client (public volume)
#
# A certificate already there is kept. The CA's key is not: to name other
# members, or when the certificate expires (825 days), remove the tls volume
# and start again (clients then need the new ca.pem).
#
# integration/compose_auth_test.go runs this script with openssl on the test
# machine; the container installs openssl when its image lacks it.
set -eu
: "${TLS_DIR:?the members directory}" "${PUBLIC:?the clients directory}" "${NAMES:?the members host names}"

if [ -s "$TLS_DIR/ca.pem" ] && [ -s "$TLS_DIR/server.pem" ] && [ -s "$TLS_DIR/server-key.pem" ]; then
	echo "tls: keeping the certificate in $TLS_DIR"
else
	command -v openssl >/dev/null 2>&1 || apk add --no-cache openssl >/dev/null
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	san=""
	for name in $NAMES; do san="$san,DNS:$name"; done
	for ip in ${IPS:-}; do san="$san,IP:$ip"; done
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
		-subj "/CN=pcm compose CA" -keyout "$work/ca-key.pem" -out "$work/ca.pem" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-subj "/CN=pcm nats" -keyout "$work/server-key.pem" -out "$work/server.csr" 2>/dev/null
	cat >"$work/ext.cnf" <<-EOF
		basicConstraints=critical,CA:FALSE
		keyUsage=critical,digitalSignature,keyEncipherment
		extendedKeyUsage=serverAuth,clientAuth
		subjectAltName=${san#,}
	EOF
	openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca-key.pem" -set_serial "0x$(openssl rand -hex 16)" \
		-days 825 -extfile "$work/ext.cnf" -out "$work/server.pem" 2>/dev/null
	chmod 0600 "$work/server-key.pem"
	chmod 0644 "$work/ca.pem" "$work/server.pem"
	# The key and the certificate first: the check above looks for all three.
	mv "$work/server-key.pem" "$TLS_DIR/server-key.pem"
	mv "$work/server.pem" "$TLS_DIR/server.pem"
	mv "$work/ca.pem" "$TLS_DIR/ca.pem"
	echo "tls: made a CA and the members' certificate for ${san#,} in $TLS_DIR"
fi
cp "$TLS_DIR/ca.pem" "$PUBLIC/ca.pem.new"
mv "$PUBLIC/ca.pem.new" "$PUBLIC/ca.pem"
