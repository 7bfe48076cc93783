"""Tools that exercise a cluster (sandbox, drill); no room and not the daemon imports them."""
