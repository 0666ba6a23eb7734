"""An image the host cannot read (an I/O error on its own disk) is the host's trouble,
not the request's mistake: review9 found it ended ``refused`` (a 400 telling the user
that the image device must name a tar archive), so the proxy tried no other server."""

from __future__ import annotations

import os

from zvm_core.channels import READ
from zvm_core.pool import ChannelSpec, Pool


def test_an_image_the_host_cannot_read_is_a_host_failure(guest, tmp_path) -> None:
    not_tar = tmp_path / 'not-a-tar'
    not_tar.write_bytes(b'x' * 2000)
    unreadable = os.open(not_tar, os.O_WRONLY | os.O_CLOEXEC)      # read(): EBADF
    try:
        with Pool(size=1) as pool, open(not_tar, 'rb') as f:
            host = pool.run(str(guest('hello')),
                            [ChannelSpec('/dev/image', unreadable, READ, True, mount='/')],
                            argv=['hello'])
            mistake = pool.run(str(guest('hello')),
                               [ChannelSpec('/dev/image', f.fileno(), READ, True, mount='/')],
                               argv=['hello'])
    finally:
        os.close(unreadable)
    assert (host.status, host.host_failure) == ('killed', True), host
    assert 'cannot mount /dev/image at /' in host.message and 'must name a tar' \
        not in host.message, host.message
    assert (mistake.status, mistake.host_failure) == ('refused', False), mistake
    assert 'the image device must name a tar archive' in mistake.message
