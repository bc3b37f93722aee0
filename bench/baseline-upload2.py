#!/usr/bin/env python3
"""The bench's baseline for the API 2.0 chunked upload: what CloudSigma's Python client
(pycloudsigma upload_client.py) does, in the standard library only. initupload, then 4 worker
threads each take the next chunk (5 MiB; the last runs to the end), ask its one-time link, then
POST its bytes to the link: no read-ahead, no link prefetch. Prints the drive UUID.

    CSURI=... CSAUTH=user:secret python3 bench/baseline-upload2.py IMAGE [CHUNK_BYTES] [WORKERS]
"""
import base64, http.client, json, os, queue, sys, threading, urllib.parse

image = sys.argv[1]
chunk = int(sys.argv[2]) if len(sys.argv) > 2 else 5 * 1024 * 1024
workers = int(sys.argv[3]) if len(sys.argv) > 3 else 4
base = urllib.parse.urlsplit(os.environ["CSURI"])
auth = "Basic " + base64.b64encode(os.environ["CSAUTH"].encode()).decode()
size = os.path.getsize(image)
count = max(1, size // chunk)


def connection():
    cls = http.client.HTTPSConnection if base.scheme == "https" else http.client.HTTPConnection
    return cls(base.hostname, base.port, timeout=120)


def call(conn, method, path, body, headers):
    conn.request(method, path, body=body, headers=headers)
    answer = conn.getresponse()
    return answer.status, answer.read()


api = base.path if base.path.endswith("/") else base.path + "/"
conn = connection()
status, body = call(conn, "POST", api + "initupload/", json.dumps({"name": os.path.basename(image), "size": size, "media": "disk"}),
                    {"Authorization": auth, "Content-Type": "application/json"})
if status >= 300:
    sys.exit(f"initupload: {status} {body[:200]!r}")
uuid = json.loads(body)["objects"][0]["uuid"]

jobs = queue.Queue()
for index in range(count):
    jobs.put(index)
failures = []


def worker():
    conn = connection()
    with open(image, "rb") as f:
        while not failures:
            try:
                index = jobs.get_nowait()
            except queue.Empty:
                return
            status, body = call(conn, "POST", f"{api}drives/{uuid}/action/?do=upload_chunk",
                                json.dumps({"chunk_number": index, "chunk_size": chunk}),
                                {"Authorization": auth, "Content-Type": "application/json"})
            if status == 416:
                continue
            if status >= 300:
                failures.append(f"link {index}: {status}")
                return
            link = json.loads(body)["link"]
            start = index * chunk
            length = (size - start) if index == count - 1 else chunk
            f.seek(start)
            data = f.read(length)
            status, body = call(conn, "POST", link, data, {"Content-Type": "application/octet-stream"})
            if status >= 300:
                failures.append(f"chunk {index}: {status} {body[:200]!r}")
                return


threads = [threading.Thread(target=worker) for _ in range(workers)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
if failures:
    sys.exit("; ".join(failures))
print(uuid)
