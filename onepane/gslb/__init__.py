"""Global traffic through the DNS operators run: accounts, record writers, the publisher."""
