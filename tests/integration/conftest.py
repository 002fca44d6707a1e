import pytest
from edgeopt.board.local import LocalBoard
from edgeopt.toolkit.boards.deploy import BoardSpec


@pytest.fixture(scope="module")
def local_board():
    with LocalBoard() as board:
        yield board


@pytest.fixture
def spec(local_board) -> BoardSpec:
    return BoardSpec(
        kind="local",
        host=local_board.host,
        port=local_board.port,
        user=local_board.user,
        identity_file=local_board.client_key,
        known_hosts=local_board.known_hosts,
        use_ssh_agent=False,
        connect_timeout_s=5,
    )
