"""An empty calendar that receives invitations, the way RFC 5546 says a calendar applies them.

Reads each file given (a received email, .eml, whose text/calendar parts are taken, or a
bare .ics) in the order given, parses it with the independent `icalendar` package (PyPI),
and applies every VEVENT to a store keyed by UID: a message replaces the stored event when
its SEQUENCE is higher, or equal with a later DTSTAMP (RFC 5546 section 2.1.5); on a full
tie a CANCEL wins. REQUEST stores the event as sent, CANCEL marks it cancelled.

Prints one JSON object:
  events       UID -> the stored event (method, sequence, status, dtstamp, start, end, ...)
  invitations  one entry per VEVENT received, in order, as parsed (with the MIME method,
               the longest physical line in octets, the start in UTC computed two ways:
               from the tz database, and from the VTIMEZONE the message carries, and the
               email's text/plain body)
  ignored      the (uid, sequence, method) of the messages that changed nothing

Usage: python3 calendar_store.py FILE...
"""

import datetime
import email
import email.policy
import json
import sys

import icalendar

UTC = datetime.timezone.utc


def calendar_texts(path):
    """(text, MIME method, the email's text/plain body) of each calendar in the file."""
    with open(path, "rb") as f:
        data = f.read()
    if not path.endswith(".eml"):
        return [(data.decode("utf-8"), None, None)]
    message = email.message_from_bytes(data, policy=email.policy.default)
    plain = next((p.get_content() for p in message.walk() if p.get_content_type() == "text/plain"), None)
    found = []
    for part in message.walk():
        if part.get_content_type() == "text/calendar":
            found.append((part.get_content(), part.get_param("method"), plain))
    return found


def as_utc(value):
    """An aware datetime in UTC, or None."""
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return None


def text(value):
    return None if value is None else value.isoformat()


def by_own_vtimezone(calendar, prop):
    """The property's instant in UTC per the VTIMEZONE the message carries (None in UTC)."""
    if prop is None or "TZID" not in prop.params:
        return None
    tzid = prop.params["TZID"]
    for vtimezone in calendar.walk("VTIMEZONE"):
        if str(vtimezone.get("TZID")) == tzid:
            local = prop.dt.replace(tzinfo=None)
            return local.replace(tzinfo=vtimezone.to_tz()).astimezone(UTC)
    raise SystemExit(f"no VTIMEZONE for TZID {tzid}")


def main(paths):
    store = {}
    invitations = []
    ignored = []
    for path in paths:
        for raw, mime_method, mail_text in calendar_texts(path):
            calendar = icalendar.Calendar.from_ical(raw)
            method = str(calendar.get("METHOD", ""))
            longest = max(len(line.encode("utf-8")) for line in raw.replace("\r\n", "\n").split("\n"))
            for event in calendar.walk("VEVENT"):
                start, end = event.get("DTSTART"), event.get("DTEND")
                parsed = {
                    "method": method,
                    "mime_method": mime_method,
                    "uid": str(event.get("UID")),
                    "sequence": int(event.get("SEQUENCE", 0)),
                    "status": str(event.get("STATUS", "")),
                    "dtstamp": text(as_utc(event.get("DTSTAMP").dt)),
                    "tzid": start.params.get("TZID") if start is not None else None,
                    "dtstart_local": start.dt.replace(tzinfo=None).isoformat() if start is not None else None,
                    "dtstart_utc": text(as_utc(start.dt)) if start is not None else None,
                    "dtstart_abbreviation": start.dt.tzname() if start is not None else None,
                    "dtstart_weekday": start.dt.strftime("%a") if start is not None else None,
                    "dtstart_utc_by_vtimezone": text(by_own_vtimezone(calendar, start)),
                    "dtend_utc": text(as_utc(end.dt)) if end is not None else None,
                    "dtend_utc_by_vtimezone": text(by_own_vtimezone(calendar, end)),
                    "summary": str(event.get("SUMMARY", "")),
                    "location": str(event.get("LOCATION", "")),
                    "organizer": str(event.get("ORGANIZER", "")),
                    "attendee": str(event.get("ATTENDEE", "")),
                    "vtimezones": len(calendar.walk("VTIMEZONE")),
                    "max_line_octets": longest,
                    "mail_text": mail_text,
                }
                invitations.append(parsed)
                current = store.get(parsed["uid"])
                order = (parsed["sequence"], parsed["dtstamp"] or "")
                newer = current is None or order > (current["sequence"], current["dtstamp"] or "")
                tie_cancel = (
                    current is not None
                    and order == (current["sequence"], current["dtstamp"] or "")
                    and method == "CANCEL"
                    and current["method"] != "CANCEL"
                )
                if newer or tie_cancel:
                    stored = dict(parsed)
                    if method == "CANCEL":
                        stored["status"] = "CANCELLED"
                    store[parsed["uid"]] = stored
                else:
                    ignored.append([parsed["uid"], parsed["sequence"], method])
    json.dump({"events": store, "invitations": invitations, "ignored": ignored}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main(sys.argv[1:])
