#!/usr/bin/env bash
# Self-signed certificates for a Dask cluster's TLS (for trials and private clusters; use your
# site's CA where there is one). Writes into DIR (default ./dask-tls):
#   ca.pem                 the certificate authority that every party trusts
#   cluster.pem, cluster-key.pem   one certificate/key for scheduler, workers and clients,
#                          signed by that CA, valid for localhost, 127.0.0.1 and this host name
#   bash deploy/tls/make-self-signed-certs.sh /etc/amondask/tls [EXTRA_HOSTNAME ...]
set -euo pipefail
dir=${1:-dask-tls}
shift || true
mkdir -p "$dir"
cd "$dir"
names="DNS:localhost,IP:127.0.0.1,DNS:$(hostname)"
for extra in "$@"; do
    names="$names,DNS:$extra"
done
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=amondask-dask-ca" \
    -keyout ca-key.pem -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=amondask-dask" \
    -keyout cluster-key.pem -out cluster.csr 2>/dev/null
printf "subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n" "$names" >cluster.ext
openssl x509 -req -in cluster.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 365 \
    -extfile cluster.ext -out cluster.pem 2>/dev/null
rm -f cluster.csr cluster.ext ca.srl
chmod 600 ca-key.pem cluster-key.pem
echo "wrote $(pwd)/ca.pem, cluster.pem, cluster-key.pem"
