from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuthorizeRequest(_message.Message):
    __slots__ = ("token", "namespace", "path", "operation", "parameters")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    token: str
    namespace: str
    path: str
    operation: str
    parameters: _struct_pb2.Struct
    def __init__(self, token: _Optional[str] = ..., namespace: _Optional[str] = ..., path: _Optional[str] = ..., operation: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class AuthorizeResponse(_message.Message):
    __slots__ = ("allowed", "code", "reason", "decision_id", "entity_id", "actor_entity_id", "registration_id", "authorization_details")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_DETAILS_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    code: str
    reason: str
    decision_id: str
    entity_id: str
    actor_entity_id: str
    registration_id: str
    authorization_details: str
    def __init__(self, allowed: _Optional[bool] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ..., decision_id: _Optional[str] = ..., entity_id: _Optional[str] = ..., actor_entity_id: _Optional[str] = ..., registration_id: _Optional[str] = ..., authorization_details: _Optional[str] = ...) -> None: ...
