"""The protobuf messages of signed TEDAPI ``v1r`` commands, built at import from a descriptor.

The machine that builds the project has no ``protoc``, and generated ``_pb2`` modules would
tie the package to one protobuf release; so the schema is declared here as data (message,
field number, type, label, oneof) and turned into a ``FileDescriptorProto`` in a private
descriptor pool. Only numbers and wire types reach the wire: package and message names are
ours. The numbers are those of ``docs/tedapi.md`` (the ``universal_message``, ``Signatures``
and ``energy_device`` schemas as Tesla's apps speak them); enum fields are declared as
integers, which puts the same bytes on the wire and keeps unknown enum values readable.

Only what Max Backup and the paired keys need is declared (a routable message, its
signature, the envelope, the TEG backup-event calls, the authorized-client calls, the error
body); protobuf keeps anything else a gateway sends as unknown fields.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = [
    "CancelManualBackupEventRequest",
    "CommonMessages",
    "ControlEventSchedulingInfo",
    "GetBackupEventsResponse",
    "MessageEnvelope",
    "RoutableMessage",
    "TEGMessages",
]

_PACKAGE = "powerwall_bus.tedapi"
_F = descriptor_pb2.FieldDescriptorProto

_INT32 = _F.TYPE_INT32
_UINT32 = _F.TYPE_UINT32
_INT64 = _F.TYPE_INT64
_UINT64 = _F.TYPE_UINT64
_FIXED32 = _F.TYPE_FIXED32
_STRING = _F.TYPE_STRING
_BYTES = _F.TYPE_BYTES
_BOOL = _F.TYPE_BOOL
_MESSAGE = _F.TYPE_MESSAGE

# message -> fields: (number, name, type, message type or None, oneof or None, repeated)
_Field = tuple[int, str, int, str | None, str | None, bool]
_SCHEMA: dict[str, list[_Field]] = {
    # google.protobuf.Timestamp, declared here: same wire, no dependency to register.
    "Timestamp": [
        (1, "seconds", _INT64, None, None, False),
        (2, "nanos", _INT32, None, None, False),
    ],
    # universal_message.v1
    "Destination": [
        (1, "domain", _INT32, None, "sub_destination", False),
        (2, "routing_address", _BYTES, None, "sub_destination", False),
    ],
    "MessageStatus": [
        (1, "operation_status", _INT32, None, None, False),
        (2, "signed_message_fault", _INT32, None, None, False),
    ],
    "RoutableMessage": [
        (6, "to_destination", _MESSAGE, "Destination", None, False),
        (7, "from_destination", _MESSAGE, "Destination", None, False),
        (10, "protobuf_message_as_bytes", _BYTES, None, "payload", False),
        (12, "signed_message_status", _MESSAGE, "MessageStatus", None, False),
        (13, "signature_data", _MESSAGE, "SignatureData", "sub_sigData", False),
        (50, "request_uuid", _BYTES, None, None, False),
        (51, "uuid", _BYTES, None, None, False),
        (52, "flags", _UINT32, None, None, False),
    ],
    # Signatures
    "KeyIdentity": [
        (1, "public_key", _BYTES, None, "identity_type", False),
        (3, "handle", _UINT32, None, "identity_type", False),
    ],
    "RsaSignatureData": [
        (1, "expires_at", _FIXED32, None, None, False),
        (2, "signature", _BYTES, None, None, False),
    ],
    "SignatureData": [
        (1, "signer_identity", _MESSAGE, "KeyIdentity", None, False),
        (7, "rsa_data", _MESSAGE, "RsaSignatureData", "sig_type", False),
    ],
    # energy_device.v1
    "Participant": [
        (1, "din", _STRING, None, "id", False),
        (2, "tesla_service", _INT32, None, "id", False),
        (3, "local", _INT32, None, "id", False),
        (4, "authorized_client", _INT32, None, "id", False),
    ],
    "Status": [(1, "code", _INT32, None, None, False), (2, "message", _STRING, None, None, False)],
    "ErrorResponse": [(1, "status", _MESSAGE, "Status", None, False)],
    "CommonMessages": [(1, "error_response", _MESSAGE, "ErrorResponse", None, False)],
    "ControlEventSchedulingInfo": [
        (1, "start_time", _MESSAGE, "Timestamp", None, False),
        (2, "duration_seconds", _UINT32, None, None, False),
        (3, "priority", _UINT64, None, None, False),
    ],
    "ScheduleManualBackupEventRequest": [
        (1, "scheduling_info", _MESSAGE, "ControlEventSchedulingInfo", None, False)
    ],
    "ScheduleManualBackupEventResponse": [],
    "CancelManualBackupEventRequest": [],
    "CancelManualBackupEventResponse": [],
    "GetBackupEventsRequest": [],
    "ManualBackupEvent": [
        (1, "scheduling_info", _MESSAGE, "ControlEventSchedulingInfo", None, False)
    ],
    "BackupEvent": [
        (1, "id", _STRING, None, None, False),
        (2, "name", _STRING, None, None, False),
        (3, "scheduling_info", _MESSAGE, "ControlEventSchedulingInfo", None, False),
    ],
    "GetBackupEventsResponse": [
        (1, "manual_backup_event", _MESSAGE, "ManualBackupEvent", None, False),
        (2, "backup_events", _MESSAGE, "BackupEvent", None, True),
    ],
    "TEGMessages": [
        (45, "schedule_manual_backup_event_request", _MESSAGE, "ScheduleManualBackupEventRequest",
         "message", False),
        (46, "schedule_manual_backup_event_response", _MESSAGE,
         "ScheduleManualBackupEventResponse", "message", False),
        (47, "cancel_manual_backup_event_request", _MESSAGE, "CancelManualBackupEventRequest",
         "message", False),
        (48, "cancel_manual_backup_event_response", _MESSAGE, "CancelManualBackupEventResponse",
         "message", False),
        (49, "get_backup_events_request", _MESSAGE, "GetBackupEventsRequest", "message", False),
        (50, "get_backup_events_response", _MESSAGE, "GetBackupEventsResponse", "message", False),
    ],
    # authorized clients (paired keys)
    "AuthorizationRecord": [
        (1, "type", _INT32, None, None, False),
        (2, "description", _STRING, None, None, False),
        (3, "key_type", _INT32, None, None, False),
        (4, "public_key", _BYTES, None, None, False),
        (5, "roles", _INT32, None, None, True),
        (6, "state", _INT32, None, None, False),
        (7, "verification", _INT32, None, None, False),
        (8, "added_time", _MESSAGE, "Timestamp", None, False),
        (9, "identifier", _STRING, None, None, False),
        (10, "authorized_by_public_key", _BYTES, None, None, False),
    ],
    "AddAuthorizedClientRequest": [
        (1, "type", _INT32, None, None, False),
        (2, "description", _STRING, None, None, False),
        (3, "key_type", _INT32, None, None, False),
        (4, "public_key", _BYTES, None, None, False),
    ],
    "AddAuthorizedClientResponse": [(1, "client", _MESSAGE, "AuthorizationRecord", None, False)],
    "RemoveAuthorizedClientRequest": [(1, "public_key", _BYTES, None, None, False)],
    "RemoveAuthorizedClientResponse": [],
    "ListAuthorizedClientsRequest": [],
    "ListAuthorizedClientsResponse": [
        (1, "clients", _MESSAGE, "AuthorizationRecord", None, True),
        (2, "enable_line_switch_off", _BOOL, None, None, False),
    ],
    "AddAuthorizedClientByTrustedSignatureRequest": [
        (1, "type", _INT32, None, None, False),
        (2, "description", _STRING, None, None, False),
        (3, "key_type", _INT32, None, None, False),
        (4, "public_key", _BYTES, None, None, False),
        (5, "roles", _INT32, None, None, True),
        (6, "identifier", _STRING, None, None, False),
    ],
    "AddAuthorizedClientByTrustedSignatureResponse": [
        (1, "client", _MESSAGE, "AuthorizationRecord", None, False)
    ],
    "AuthorizationMessages": [
        (1, "add_authorized_client_request", _MESSAGE, "AddAuthorizedClientRequest", "message",
         False),
        (2, "add_authorized_client_response", _MESSAGE, "AddAuthorizedClientResponse", "message",
         False),
        (3, "remove_authorized_client_request", _MESSAGE, "RemoveAuthorizedClientRequest",
         "message", False),
        (4, "remove_authorized_client_response", _MESSAGE, "RemoveAuthorizedClientResponse",
         "message", False),
        (5, "list_authorized_clients_request", _MESSAGE, "ListAuthorizedClientsRequest",
         "message", False),
        (6, "list_authorized_clients_response", _MESSAGE, "ListAuthorizedClientsResponse",
         "message", False),
        (9, "add_authorized_client_by_trusted_signature_request", _MESSAGE,
         "AddAuthorizedClientByTrustedSignatureRequest", "message", False),
        (10, "add_authorized_client_by_trusted_signature_response", _MESSAGE,
         "AddAuthorizedClientByTrustedSignatureResponse", "message", False),
    ],
    "MessageEnvelope": [
        (1, "delivery_channel", _INT32, None, None, False),
        (2, "sender", _MESSAGE, "Participant", None, False),
        (3, "recipient", _MESSAGE, "Participant", None, False),
        (4, "common", _MESSAGE, "CommonMessages", "payload", False),
        (5, "teg", _MESSAGE, "TEGMessages", "payload", False),
        (12, "authorization", _MESSAGE, "AuthorizationMessages", "payload", False),
    ],
}  # fmt: skip


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="powerwall_bus/tedapi.proto", package=_PACKAGE, syntax="proto3"
    )
    for name, fields in _SCHEMA.items():
        message = proto.message_type.add(name=name)
        oneofs: list[str] = []
        for number, field_name, kind, type_name, oneof, repeated in fields:
            field = message.field.add(
                name=field_name,
                number=number,
                type=kind,
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            )
            if type_name is not None:
                field.type_name = f".{_PACKAGE}.{type_name}"
            if oneof is not None:
                if oneof not in oneofs:
                    oneofs.append(oneof)
                    message.oneof_decl.add(name=oneof)
                field.oneof_index = oneofs.index(oneof)
    return proto


def _classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    file = pool.Add(_file_descriptor())
    return {
        name: message_factory.GetMessageClass(file.message_types_by_name[name]) for name in _SCHEMA
    }


_CLASSES = _classes()

# The classes are built at run time, so static typing sees them as Any.
RoutableMessage: Any = _CLASSES["RoutableMessage"]
MessageEnvelope: Any = _CLASSES["MessageEnvelope"]
TEGMessages: Any = _CLASSES["TEGMessages"]
CommonMessages: Any = _CLASSES["CommonMessages"]
ControlEventSchedulingInfo: Any = _CLASSES["ControlEventSchedulingInfo"]
GetBackupEventsResponse: Any = _CLASSES["GetBackupEventsResponse"]
CancelManualBackupEventRequest: Any = _CLASSES["CancelManualBackupEventRequest"]

# Values the requests carry (enums in Tesla's schema, integers here).
DOMAIN_ENERGY_DEVICE = 7
DELIVERY_CHANNEL_HERMES_COMMAND = 2
AUTHORIZED_CLIENT_CUSTOMER_MOBILE_APP = 1
OPERATION_STATUS_OK = 0
OPERATION_STATUS_ERROR = 2
AUTHORIZED_KEY_TYPE_RSA = 1
AUTHORIZATION_ROLE_CUSTOMER = 1
#: AuthorizedState values
AUTHORIZED_STATE_PENDING_VERIFICATION = 1
AUTHORIZED_STATE_VERIFIED = 3
VERIFICATION_PRESENCE_PROOF = 1
#: Tesla-API sends the largest uint64 as the Max Backup priority.
MAX_PRIORITY = 2**64 - 1
