#!/bin/sh
# HTTPS when the operator has put a certificate in the TLS directory (docker-compose.yml mounts
# ./tls there): the server block (nginx.conf) includes what this writes, which adds a 443 listener
# with that certificate, HSTS, and sends plain-HTTP visitors to https (all but /nginx-health, the
# image's healthcheck, and the ACME challenge, which certbot's renewals answer over port 80).
# Without a certificate nothing is written and the site stays on port 80 alone. The nginx image
# runs every script in /docker-entrypoint.d before nginx starts.
set -eu
TLS_DIR="${IAZE_TLS_DIR:-/etc/nginx/tls}"
CONF_DIR="${IAZE_TLS_CONF_DIR:-/etc/nginx/tls.d}"
LISTEN="${IAZE_TLS_LISTEN:-443}"
mkdir -p "$CONF_DIR"
rm -f "$CONF_DIR/iaze-tls.conf"
if [ -s "$TLS_DIR/fullchain.pem" ] && [ -s "$TLS_DIR/privkey.pem" ]; then
  cat > "$CONF_DIR/iaze-tls.conf" <<CONF
listen $LISTEN ssl;
ssl_certificate $TLS_DIR/fullchain.pem;
ssl_certificate_key $TLS_DIR/privkey.pem;
ssl_protocols TLSv1.2 TLSv1.3;
ssl_session_cache shared:iaze_tls:10m;
add_header Strict-Transport-Security "max-age=31536000" always;
if (\$iaze_to_https) {
    return 301 https://\$host\$request_uri;
}
CONF
  echo "iaze: HTTPS on $LISTEN with $TLS_DIR/fullchain.pem"
else
  echo "iaze: no certificate in $TLS_DIR: HTTP only"
fi
