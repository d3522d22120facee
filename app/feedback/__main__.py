"""`python -m app.feedback upgrade`: migrate the feedback database's schema to the newest revision.

The server and training do this by themselves at start-up; this command does it alone (before a
deployment, say). Reads the same settings as the server: DATABASE_URL, else STATE_DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.feedback", description=__doc__.splitlines()[0])
    parser.add_argument(
        "command", choices=["upgrade"], help="upgrade: migrate the schema to the newest revision"
    )
    parser.add_argument(
        "--database-url", help="the database (default: $DATABASE_URL, else the SQLite file under $STATE_DIR)"
    )
    args = parser.parse_args(argv)

    from pydantic import ValidationError

    from app.feedback.db import async_url, describe, migrate
    from app.settings import DatabaseSettings

    try:
        settings = DatabaseSettings(**({"database_url": args.database_url} if args.database_url else {}))
    except ValidationError as error:
        print(f"cannot migrate: invalid setting ({error.errors()[0]['msg']})", file=sys.stderr)
        return 2
    url = settings.feedback_database_url()
    where = describe(async_url(url))
    try:
        revision = asyncio.run(migrate(url, connect_timeout_s=settings.database_timeout_s))
    except Exception as error:
        reason = (str(error).strip().splitlines() or [repr(error)])[0]
        print(f"cannot migrate {where}: {reason}", file=sys.stderr)
        return 1
    print(f"{where} is at schema revision {revision}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
