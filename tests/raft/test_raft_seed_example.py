"""The seed's example test, unchanged except for the ``omnimind`` import path."""

import asyncio

import pytest

from omnimind.scaling import NodeState, RaftNode


class TestClusterIntegration:
    """Testes de integração de cluster"""

    @pytest.mark.asyncio
    async def test_raft_leader_election(self):
        """Testa eleição de líder"""

        nodes = ["node-1", "node-2", "node-3"]
        raft_cluster = {nid: RaftNode(nid, nodes) for nid in nodes}

        # Inicia todos
        for node in raft_cluster.values():
            await node.start()

        # Aguarda eleição
        await asyncio.sleep(1)

        # Verifica que há exatamente 1 líder
        leaders = [n for n in raft_cluster.values() if n.state == NodeState.LEADER]
        assert len(leaders) == 1
