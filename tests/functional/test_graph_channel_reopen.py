"""A node's ``/dev/in/...`` channel is a stream read once (doc/job-reference.md,
"Wiring"): opened again it goes on where the last read stopped, never from the
start, and it can neither seek nor be written; the same on both engines."""

from __future__ import annotations

from pathlib import Path

import pytest
from swiftclient import Connection
from test_jobs import post_job

READER = r'''
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(void) {
    char b[4096];
    int fd = open("/dev/in/m", O_RDONLY);
    ssize_t first = read(fd, b, 100);
    int seek = lseek(fd, 0, SEEK_SET) < 0 ? errno : 0;
    close(fd);
    fd = open("/dev/in/m", O_RDONLY);
    long rest = 0;
    ssize_t n;
    while ((n = read(fd, b, sizeof b)) > 0) rest += n;
    close(fd);
    int write_errno = open("/dev/in/m", O_WRONLY) < 0 ? errno : 0;
    printf("first %zd rest %ld seek %s write %s\n", first, rest,
           seek == ESPIPE ? "ESPIPE" : "?", write_errno == EACCES ? "EACCES" : "?");
    return 0;
}
'''


@pytest.mark.parametrize('engine', ['native', 'emulated'])
def test_a_channel_opened_again_goes_on_where_it_stopped(
        conn: Connection, make_container, guest, tmp_path: Path, engine: str) -> None:
    container = make_container('reopen')
    source = tmp_path / 'reopen.c'
    source.write_text(READER)
    conn.put_object(container, 'reader', guest(source).read_bytes())
    conn.put_object(container, 'pipe', guest('graph_pipe').read_bytes())
    conn.put_object(container, 'data', b'x' * 165)
    job = [{'name': 'm', 'exec': {'path': f'swift://~/{container}/pipe', 'args': '- r 0'},
            'engine': engine, 'connect': ['r'],
            'devices': [{'name': 'stdin', 'path': f'swift://~/{container}/data'}]},
           {'name': 'r', 'exec': {'path': f'swift://~/{container}/reader'}, 'engine': engine,
            'devices': [{'name': 'stdout'}]}]
    resp = post_job(conn, job)
    assert resp.status_code == 200, resp.text
    assert resp.text.endswith('first 100 rest 65 seek ESPIPE write EACCES\n'), resp.text
