"""The package's one exception root, with the whole tree drawn here."""

# WatchdogError                     anything rmq-watchdog raises on purpose
#  ├── ConfigError                  config: a config file that cannot be used (exit 2)
#  ├── DockerCliError               model: a docker argv the backend does not understand
#  ├── RemotingError                remoting: no usable answer from a RocketMQ server
#  │    ├── RemotingTimeout, RemotingConnectError, RemotingClosed
#  │    ├── ProtocolError           garbage on the wire, a body that makes no sense
#  │    └── RemoteError             the server answered with a non-zero code
#  │         └── AclRefused         a broker's ACL refused the request (credentials, rights)
#  ├── HostError                    hosts: a host unreachable, a file operation failed
#  ├── CoordError                   coord: etcd unreachable or refusing (drawn in coord/_errors.py)
#  │    ├── EtcdUnavailable, LeaseGone
#  │    └── FenceRefused            a fenced write not committed: not (surely) the leader
#  ├── CanaryOutputError            native: a canary child's output that is not its protocol
#  ├── StateError                   act: state.json unreadable or not ours
#  ├── CommitLogError               act: a commit log that cannot be read for loss accounting
#  ├── StepFailed                   act: a failover step that did not do what it must
#  ├── LockHeld                     daemon: another actor holds the state dir's lock
#  ├── SandboxError                 tools/sandbox: the sandbox cluster cannot do what was asked
#  │    └── UnknownProcess          a pid file naming a process that is not ours
#  └── DrillRefused                 tools/drill: a drill that must not run on this cluster
#
# The executor retries and records a step on WatchdogError alone: every failure it can expect
# from a host, a broker or its own checks is one, and anything else is a bug that must surface.
# StateError and ConfigError are not a step's failure and end the run (act/_steps.py says why).

from __future__ import annotations

__all__ = ["WatchdogError"]


class WatchdogError(Exception):
    """Base class of every error rmq-watchdog raises on purpose."""
