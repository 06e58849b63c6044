from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PublicKey(_message.Message):
    __slots__ = ("key_id", "pem")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PEM_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    pem: str
    def __init__(self, key_id: _Optional[str] = ..., pem: _Optional[str] = ...) -> None: ...

class OAuthResourceServerProfile(_message.Message):
    __slots__ = ("namespace", "profile_name", "issuer_id", "use_jwks", "jwks_uri", "jwks_ca_pem", "public_keys", "audiences", "no_default_policy", "user_claim", "supported_algorithms", "jwt_type", "clock_skew_leeway", "enabled", "optional_authorization_details", "unique_id_claim", "actor_claim", "config_id", "mount_accessor", "version", "creation_time", "last_updated_time")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_NAME_FIELD_NUMBER: _ClassVar[int]
    ISSUER_ID_FIELD_NUMBER: _ClassVar[int]
    USE_JWKS_FIELD_NUMBER: _ClassVar[int]
    JWKS_URI_FIELD_NUMBER: _ClassVar[int]
    JWKS_CA_PEM_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEYS_FIELD_NUMBER: _ClassVar[int]
    AUDIENCES_FIELD_NUMBER: _ClassVar[int]
    NO_DEFAULT_POLICY_FIELD_NUMBER: _ClassVar[int]
    USER_CLAIM_FIELD_NUMBER: _ClassVar[int]
    SUPPORTED_ALGORITHMS_FIELD_NUMBER: _ClassVar[int]
    JWT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CLOCK_SKEW_LEEWAY_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_AUTHORIZATION_DETAILS_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_ID_CLAIM_FIELD_NUMBER: _ClassVar[int]
    ACTOR_CLAIM_FIELD_NUMBER: _ClassVar[int]
    CONFIG_ID_FIELD_NUMBER: _ClassVar[int]
    MOUNT_ACCESSOR_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATED_TIME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    profile_name: str
    issuer_id: str
    use_jwks: bool
    jwks_uri: str
    jwks_ca_pem: str
    public_keys: _containers.RepeatedCompositeFieldContainer[PublicKey]
    audiences: _containers.RepeatedScalarFieldContainer[str]
    no_default_policy: bool
    user_claim: str
    supported_algorithms: _containers.RepeatedScalarFieldContainer[str]
    jwt_type: str
    clock_skew_leeway: int
    enabled: bool
    optional_authorization_details: bool
    unique_id_claim: str
    actor_claim: str
    config_id: str
    mount_accessor: str
    version: int
    creation_time: str
    last_updated_time: str
    def __init__(self, namespace: _Optional[str] = ..., profile_name: _Optional[str] = ..., issuer_id: _Optional[str] = ..., use_jwks: _Optional[bool] = ..., jwks_uri: _Optional[str] = ..., jwks_ca_pem: _Optional[str] = ..., public_keys: _Optional[_Iterable[_Union[PublicKey, _Mapping]]] = ..., audiences: _Optional[_Iterable[str]] = ..., no_default_policy: _Optional[bool] = ..., user_claim: _Optional[str] = ..., supported_algorithms: _Optional[_Iterable[str]] = ..., jwt_type: _Optional[str] = ..., clock_skew_leeway: _Optional[int] = ..., enabled: _Optional[bool] = ..., optional_authorization_details: _Optional[bool] = ..., unique_id_claim: _Optional[str] = ..., actor_claim: _Optional[str] = ..., config_id: _Optional[str] = ..., mount_accessor: _Optional[str] = ..., version: _Optional[int] = ..., creation_time: _Optional[str] = ..., last_updated_time: _Optional[str] = ...) -> None: ...

class ProfileResponse(_message.Message):
    __slots__ = ("profile", "warnings", "generation")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    profile: OAuthResourceServerProfile
    warnings: _containers.RepeatedScalarFieldContainer[str]
    generation: int
    def __init__(self, profile: _Optional[_Union[OAuthResourceServerProfile, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., generation: _Optional[int] = ...) -> None: ...

class CreateProfileRequest(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: OAuthResourceServerProfile
    def __init__(self, profile: _Optional[_Union[OAuthResourceServerProfile, _Mapping]] = ...) -> None: ...

class ReadProfileRequest(_message.Message):
    __slots__ = ("namespace", "profile_name", "config_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    profile_name: str
    config_id: str
    def __init__(self, namespace: _Optional[str] = ..., profile_name: _Optional[str] = ..., config_id: _Optional[str] = ...) -> None: ...

class UpdateProfileRequest(_message.Message):
    __slots__ = ("profile", "expected_version")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    profile: OAuthResourceServerProfile
    expected_version: int
    def __init__(self, profile: _Optional[_Union[OAuthResourceServerProfile, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteProfileRequest(_message.Message):
    __slots__ = ("namespace", "profile_name", "expected_version")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_NAME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    profile_name: str
    expected_version: int
    def __init__(self, namespace: _Optional[str] = ..., profile_name: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("namespace", "page_size", "page_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    page_size: int
    page_token: str
    def __init__(self, namespace: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProfilesResponse(_message.Message):
    __slots__ = ("profiles", "next_page_token")
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    profiles: _containers.RepeatedCompositeFieldContainer[OAuthResourceServerProfile]
    next_page_token: str
    def __init__(self, profiles: _Optional[_Iterable[_Union[OAuthResourceServerProfile, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("generation",)
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    generation: int
    def __init__(self, generation: _Optional[int] = ...) -> None: ...

class AgentRegistration(_message.Message):
    __slots__ = ("namespace", "id", "display_name", "entity_id", "description", "owner", "ceiling_policies", "no_default_ceiling_policy", "optional_authorization_details", "creation_time", "last_updated_time", "requested_ceiling_policies", "version")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CEILING_POLICIES_FIELD_NUMBER: _ClassVar[int]
    NO_DEFAULT_CEILING_POLICY_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_AUTHORIZATION_DETAILS_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATED_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_CEILING_POLICIES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    id: str
    display_name: str
    entity_id: str
    description: str
    owner: str
    ceiling_policies: _containers.RepeatedScalarFieldContainer[str]
    no_default_ceiling_policy: bool
    optional_authorization_details: bool
    creation_time: str
    last_updated_time: str
    requested_ceiling_policies: _containers.RepeatedScalarFieldContainer[str]
    version: int
    def __init__(self, namespace: _Optional[str] = ..., id: _Optional[str] = ..., display_name: _Optional[str] = ..., entity_id: _Optional[str] = ..., description: _Optional[str] = ..., owner: _Optional[str] = ..., ceiling_policies: _Optional[_Iterable[str]] = ..., no_default_ceiling_policy: _Optional[bool] = ..., optional_authorization_details: _Optional[bool] = ..., creation_time: _Optional[str] = ..., last_updated_time: _Optional[str] = ..., requested_ceiling_policies: _Optional[_Iterable[str]] = ..., version: _Optional[int] = ...) -> None: ...

class RegistrationResponse(_message.Message):
    __slots__ = ("registration", "warnings", "generation")
    REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    registration: AgentRegistration
    warnings: _containers.RepeatedScalarFieldContainer[str]
    generation: int
    def __init__(self, registration: _Optional[_Union[AgentRegistration, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., generation: _Optional[int] = ...) -> None: ...

class CreateRegistrationRequest(_message.Message):
    __slots__ = ("registration",)
    REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    registration: AgentRegistration
    def __init__(self, registration: _Optional[_Union[AgentRegistration, _Mapping]] = ...) -> None: ...

class ReadRegistrationRequest(_message.Message):
    __slots__ = ("namespace", "id", "display_name", "entity_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    id: str
    display_name: str
    entity_id: str
    def __init__(self, namespace: _Optional[str] = ..., id: _Optional[str] = ..., display_name: _Optional[str] = ..., entity_id: _Optional[str] = ...) -> None: ...

class UpdateRegistrationRequest(_message.Message):
    __slots__ = ("registration", "expected_version")
    REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    registration: AgentRegistration
    expected_version: int
    def __init__(self, registration: _Optional[_Union[AgentRegistration, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteRegistrationRequest(_message.Message):
    __slots__ = ("namespace", "id", "expected_version")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    id: str
    expected_version: int
    def __init__(self, namespace: _Optional[str] = ..., id: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class ListRegistrationsResponse(_message.Message):
    __slots__ = ("registrations", "next_page_token")
    REGISTRATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    registrations: _containers.RepeatedCompositeFieldContainer[AgentRegistration]
    next_page_token: str
    def __init__(self, registrations: _Optional[_Iterable[_Union[AgentRegistration, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("namespace", "name", "policy", "builtin", "version", "creation_time", "last_updated_time")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATED_TIME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    policy: str
    builtin: bool
    version: int
    creation_time: str
    last_updated_time: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., policy: _Optional[str] = ..., builtin: _Optional[bool] = ..., version: _Optional[int] = ..., creation_time: _Optional[str] = ..., last_updated_time: _Optional[str] = ...) -> None: ...

class PolicyResponse(_message.Message):
    __slots__ = ("policy", "warnings", "generation")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    warnings: _containers.RepeatedScalarFieldContainer[str]
    generation: int
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., generation: _Optional[int] = ...) -> None: ...

class CreatePolicyRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ...) -> None: ...

class ReadPolicyRequest(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class UpdatePolicyRequest(_message.Message):
    __slots__ = ("policy", "expected_version")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    expected_version: int
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeletePolicyRequest(_message.Message):
    __slots__ = ("namespace", "name", "expected_version")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    expected_version: int
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class ListPoliciesResponse(_message.Message):
    __slots__ = ("policies", "next_page_token")
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[Policy]
    next_page_token: str
    def __init__(self, policies: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class IdentityEntity(_message.Message):
    __slots__ = ("namespace", "id", "name", "policies", "metadata", "disabled", "version", "creation_time", "last_updated_time")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATED_TIME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    id: str
    name: str
    policies: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    disabled: bool
    version: int
    creation_time: str
    last_updated_time: str
    def __init__(self, namespace: _Optional[str] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., policies: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., disabled: _Optional[bool] = ..., version: _Optional[int] = ..., creation_time: _Optional[str] = ..., last_updated_time: _Optional[str] = ...) -> None: ...

class EntityResponse(_message.Message):
    __slots__ = ("entity", "warnings", "generation")
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    entity: IdentityEntity
    warnings: _containers.RepeatedScalarFieldContainer[str]
    generation: int
    def __init__(self, entity: _Optional[_Union[IdentityEntity, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., generation: _Optional[int] = ...) -> None: ...

class CreateEntityRequest(_message.Message):
    __slots__ = ("entity",)
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    entity: IdentityEntity
    def __init__(self, entity: _Optional[_Union[IdentityEntity, _Mapping]] = ...) -> None: ...

class ReadEntityRequest(_message.Message):
    __slots__ = ("namespace", "id", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    id: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class UpdateEntityRequest(_message.Message):
    __slots__ = ("entity", "expected_version")
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    entity: IdentityEntity
    expected_version: int
    def __init__(self, entity: _Optional[_Union[IdentityEntity, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteEntityRequest(_message.Message):
    __slots__ = ("namespace", "id", "expected_version")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    id: str
    expected_version: int
    def __init__(self, namespace: _Optional[str] = ..., id: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class ListEntitiesResponse(_message.Message):
    __slots__ = ("entities", "next_page_token")
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entities: _containers.RepeatedCompositeFieldContainer[IdentityEntity]
    next_page_token: str
    def __init__(self, entities: _Optional[_Iterable[_Union[IdentityEntity, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class EntityAlias(_message.Message):
    __slots__ = ("namespace", "id", "name", "canonical_id", "mount_accessor", "issuer", "external_id", "custom_metadata", "version", "creation_time", "last_updated_time")
    class CustomMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_ID_FIELD_NUMBER: _ClassVar[int]
    MOUNT_ACCESSOR_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_METADATA_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATED_TIME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    id: str
    name: str
    canonical_id: str
    mount_accessor: str
    issuer: str
    external_id: str
    custom_metadata: _containers.ScalarMap[str, str]
    version: int
    creation_time: str
    last_updated_time: str
    def __init__(self, namespace: _Optional[str] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., canonical_id: _Optional[str] = ..., mount_accessor: _Optional[str] = ..., issuer: _Optional[str] = ..., external_id: _Optional[str] = ..., custom_metadata: _Optional[_Mapping[str, str]] = ..., version: _Optional[int] = ..., creation_time: _Optional[str] = ..., last_updated_time: _Optional[str] = ...) -> None: ...

class AliasResponse(_message.Message):
    __slots__ = ("alias", "warnings", "generation")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    alias: EntityAlias
    warnings: _containers.RepeatedScalarFieldContainer[str]
    generation: int
    def __init__(self, alias: _Optional[_Union[EntityAlias, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., generation: _Optional[int] = ...) -> None: ...

class CreateAliasRequest(_message.Message):
    __slots__ = ("alias",)
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    alias: EntityAlias
    def __init__(self, alias: _Optional[_Union[EntityAlias, _Mapping]] = ...) -> None: ...

class ReadAliasRequest(_message.Message):
    __slots__ = ("namespace", "id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    id: str
    def __init__(self, namespace: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class UpdateAliasRequest(_message.Message):
    __slots__ = ("alias", "expected_version")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    alias: EntityAlias
    expected_version: int
    def __init__(self, alias: _Optional[_Union[EntityAlias, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteAliasRequest(_message.Message):
    __slots__ = ("namespace", "id", "expected_version")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    id: str
    expected_version: int
    def __init__(self, namespace: _Optional[str] = ..., id: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class ListAliasesResponse(_message.Message):
    __slots__ = ("aliases", "next_page_token")
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    aliases: _containers.RepeatedCompositeFieldContainer[EntityAlias]
    next_page_token: str
    def __init__(self, aliases: _Optional[_Iterable[_Union[EntityAlias, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("version", "generation", "database")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    version: str
    generation: int
    database: str
    def __init__(self, version: _Optional[str] = ..., generation: _Optional[int] = ..., database: _Optional[str] = ...) -> None: ...

class ActivationFlag(_message.Message):
    __slots__ = ("feature", "activated_time")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_TIME_FIELD_NUMBER: _ClassVar[int]
    feature: str
    activated_time: str
    def __init__(self, feature: _Optional[str] = ..., activated_time: _Optional[str] = ...) -> None: ...

class ActivateFeatureRequest(_message.Message):
    __slots__ = ("feature",)
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    feature: str
    def __init__(self, feature: _Optional[str] = ...) -> None: ...

class ActivationFlagResponse(_message.Message):
    __slots__ = ("flag", "generation")
    FLAG_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    flag: ActivationFlag
    generation: int
    def __init__(self, flag: _Optional[_Union[ActivationFlag, _Mapping]] = ..., generation: _Optional[int] = ...) -> None: ...

class ListActivationFlagsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListActivationFlagsResponse(_message.Message):
    __slots__ = ("activated",)
    ACTIVATED_FIELD_NUMBER: _ClassVar[int]
    activated: _containers.RepeatedCompositeFieldContainer[ActivationFlag]
    def __init__(self, activated: _Optional[_Iterable[_Union[ActivationFlag, _Mapping]]] = ...) -> None: ...
