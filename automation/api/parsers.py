"""Request bodies of the API: camelCase JSON, decoded strictly (``automation.strict_json``)."""

from djangorestframework_camel_case.parser import CamelCaseJSONParser
from djangorestframework_camel_case.util import underscoreize
from rest_framework.exceptions import ParseError

from automation import strict_json


class StrictCamelCaseJSONParser(CamelCaseJSONParser):
    """A body with ``NaN``, ``1e999``, a NUL or lone surrogate, or nesting past
    ``strict_json.MAX_DEPTH`` is a 400 naming the problem, never a 500 further on."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            document = strict_json.loads(stream.read())
        except ValueError as exc:  # UnicodeDecodeError too
            raise ParseError(f"JSON parse error - {exc}") from exc
        return underscoreize(document, **self.json_underscoreize)
