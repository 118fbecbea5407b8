#!/bin/sh
# Installs OpenSSH's server for tests/e2e/test_deploy.py when it is missing and
# this machine allows it (root, apt-get present). Never fails the build: when
# sshd cannot be had, the deploy tests skip and say why.
if command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_sshd: no sshd and no way to install it here (needs root and apt-get);" \
         "the deploy tests will skip" >&2
    exit 0
fi
echo "install_sshd: installing openssh-server for the deploy tests" >&2
export DEBIAN_FRONTEND=noninteractive
# Only the binaries are wanted: policy-rc.d keeps the package from starting a daemon.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    remove_policy=1
fi
{ apt-get install -y -q --no-install-recommends openssh-server >/dev/null 2>&1 ||
  { apt-get update -q >/dev/null 2>&1 &&
    apt-get install -y -q --no-install-recommends openssh-server >/dev/null 2>&1; }; } ||
    echo "install_sshd: apt-get could not install openssh-server; the deploy tests will skip" >&2
[ -n "${remove_policy:-}" ] && rm -f /usr/sbin/policy-rc.d
exit 0
