"""How Raft members reach each other: the transport contract, an in-process network with fault injection for
tests, and the authenticated TCP transport."""

from .base import DeliverCallback, RaftTransport
from .framing import FrameRejected, encode_frame
from .inprocess import InProcessNetwork, InProcessTransport
from .tcp import TcpTransport, check_peers, parse_peer_addresses

__all__ = ["DeliverCallback", "FrameRejected", "InProcessNetwork", "InProcessTransport", "RaftTransport",
           "TcpTransport", "check_peers", "encode_frame", "parse_peer_addresses"]
