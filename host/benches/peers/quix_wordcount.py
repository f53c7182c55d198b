"""Word count in Quix Streams, for `make bench-peers` (host/benches/peers/quix.rs runs it).

The same topology as wasp's word count: split each line into words (one message per word),
re-key by the word (a repartition topic), and count per word in Quix's default state
(RocksDB, with its changelog topic), writing every updated count to the output topic.
Prints `ready` once the application is built, then runs until SIGTERM.
"""

import argparse

from quixstreams import Application, State


def count(word: str, state: State) -> int:
    """Adds one to the word's count (the message key is the word) and returns the new count."""
    n = state.get("count", 0) + 1
    state.set("count", n)
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True, help="consumer group (unique per run)")
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args()

    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    lines = app.topic(args.input, key_deserializer="str", value_deserializer="str")
    # Counts as JSON numbers: decimal text, as wasp writes them.
    counts = app.topic(args.output, key_serializer="str", value_serializer="json")

    sdf = app.dataframe(lines)
    sdf = sdf.apply(lambda line: line.split(), expand=True)
    sdf = sdf.group_by(lambda word: word, name="word", key_serializer="str", key_deserializer="str")
    sdf = sdf.apply(count, stateful=True)
    sdf.to_topic(counts)

    print("ready", flush=True)
    app.run()


if __name__ == "__main__":
    main()
