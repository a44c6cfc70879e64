"""``python -m bench.s3_clients``: boto3 against obstore on a throwaway SeaweedFS.

Starts ``weed server -s3`` on loopback (the tests' fixture), then for each
client times, in the same run: a large object written in 8 MiB parts (a
multipart upload, as the S3 blob store writes), the same object read
whole and read by sequential 8 MiB ranged GETs (as downloads read), and a
burst of small PUT/GET pairs (request latency). Prints MB/s; the choice
and its figures are recorded at the top of ``coffre/storage/s3.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

MIB = 1 << 20
PART = 8 * MIB

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(label: str, nbytes: int, work: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    rate = nbytes / best / 1e6 if nbytes else 0.0
    print(f"  {label:<38} {best * 1000:9.1f} ms  {rate:9.1f} MB/s", flush=True)
    return rate


def bench_boto3(service: object, data: bytes, small: int, rounds: int) -> None:
    import boto3
    from botocore.config import Config

    s = service
    client = boto3.client(
        "s3", endpoint_url=s.endpoint, region_name=s.region,  # type: ignore[attr-defined]
        aws_access_key_id=s.access_key, aws_secret_access_key=s.secret_key,  # type: ignore[attr-defined]
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=16,
                      request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"),
    )
    bucket = s.bucket  # type: ignore[attr-defined]

    def put_multipart() -> None:
        upload = client.create_multipart_upload(Bucket=bucket, Key="boto3/big")
        parts = []
        for number, start in enumerate(range(0, len(data), PART), 1):
            answer = client.upload_part(
                Bucket=bucket, Key="boto3/big", UploadId=upload["UploadId"],
                PartNumber=number, Body=data[start:start + PART],
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        client.complete_multipart_upload(
            Bucket=bucket, Key="boto3/big", UploadId=upload["UploadId"],
            MultipartUpload={"Parts": parts},
        )

    def put_concurrent() -> None:
        from concurrent.futures import ThreadPoolExecutor

        upload = client.create_multipart_upload(Bucket=bucket, Key="boto3/big")

        def part(item: tuple[int, int]) -> dict[str, object]:
            number, start = item
            answer = client.upload_part(
                Bucket=bucket, Key="boto3/big", UploadId=upload["UploadId"],
                PartNumber=number, Body=data[start:start + PART],
            )
            return {"PartNumber": number, "ETag": answer["ETag"]}

        with ThreadPoolExecutor(4) as pool:
            parts = list(pool.map(part, enumerate(range(0, len(data), PART), 1)))
        client.complete_multipart_upload(
            Bucket=bucket, Key="boto3/big", UploadId=upload["UploadId"],
            MultipartUpload={"Parts": parts},
        )

    def get_whole() -> None:
        body = client.get_object(Bucket=bucket, Key="boto3/big")["Body"].read()
        assert len(body) == len(data)

    def get_ranges() -> None:
        got = 0
        for start in range(0, len(data), PART):
            end = min(len(data), start + PART) - 1
            got += len(client.get_object(Bucket=bucket, Key="boto3/big",
                                         Range=f"bytes={start}-{end}")["Body"].read())
        assert got == len(data)

    def small_pairs() -> None:
        for index in range(small):
            client.put_object(Bucket=bucket, Key=f"boto3/small/{index}", Body=b"x" * 4096)
            client.get_object(Bucket=bucket, Key=f"boto3/small/{index}")["Body"].read()

    print("boto3")
    timed(f"PUT {len(data) // MIB} MiB, 8 MiB parts", len(data), put_multipart, rounds)
    timed("PUT, same, 4 parts in flight", len(data), put_concurrent, rounds)
    timed("GET whole", len(data), get_whole, rounds)
    timed("GET by 8 MiB ranges", len(data), get_ranges, rounds)
    timed(f"{small} x (PUT+GET 4 KiB)", 0, small_pairs, 1)


def bench_obstore(service: object, data: bytes, small: int, rounds: int) -> None:
    import obstore
    from obstore.store import S3Store

    s = service
    store = S3Store(
        s.bucket, endpoint=s.endpoint, region=s.region,  # type: ignore[attr-defined]
        access_key_id=s.access_key, secret_access_key=s.secret_key,  # type: ignore[attr-defined]
        virtual_hosted_style_request=False, client_options={"allow_http": True},
    )

    def put_multipart() -> None:
        chunks = (data[start:start + PART] for start in range(0, len(data), PART))
        obstore.put(store, "obstore/big", chunks, use_multipart=True, chunk_size=PART,
                    max_concurrency=1)

    def put_concurrent() -> None:
        chunks = (data[start:start + PART] for start in range(0, len(data), PART))
        obstore.put(store, "obstore/big", chunks, use_multipart=True, chunk_size=PART)

    def get_whole() -> None:
        body = obstore.get(store, "obstore/big").bytes()
        assert len(body) == len(data)

    def get_ranges() -> None:
        got = 0
        for start in range(0, len(data), PART):
            got += len(obstore.get_range(store, "obstore/big", start=start,
                                         end=min(len(data), start + PART)))
        assert got == len(data)

    def small_pairs() -> None:
        for index in range(small):
            obstore.put(store, f"obstore/small/{index}", b"x" * 4096)
            obstore.get(store, f"obstore/small/{index}").bytes()

    print("obstore")
    timed(f"PUT {len(data) // MIB} MiB, 8 MiB parts", len(data), put_multipart, rounds)
    timed("PUT, same, 12 parts in flight", len(data), put_concurrent, rounds)
    timed("GET whole", len(data), get_whole, rounds)
    timed("GET by 8 MiB ranges", len(data), get_ranges, rounds)
    timed(f"{small} x (PUT+GET 4 KiB)", 0, small_pairs, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.s3_clients", description=__doc__)
    parser.add_argument("--mib", type=int, default=256, help="size of the large object")
    parser.add_argument("--small", type=int, default=200, help="small PUT/GET pairs")
    parser.add_argument("--rounds", type=int, default=3, help="best of N")
    args = parser.parse_args(argv)

    from tests.backends import seaweedfs

    data = os.urandom(args.mib * MIB)
    with seaweedfs() as service:
        print(f"SeaweedFS at {service.endpoint}, {os.cpu_count()} CPUs")
        bench_boto3(service, data, args.small, args.rounds)
        bench_obstore(service, data, args.small, args.rounds)


if __name__ == "__main__":
    main()
