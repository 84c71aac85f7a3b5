// Typings of the vBoxx management API (/1/management/...). The service documents its objects
// loosely ("don't have any machines locally for testing"), so the known fields are typed and
// everything else is kept as is.

export interface Person {
  id: number;
  first_name?: string;
  last_name?: string;
  email?: string;
  username?: string;
  company_id?: number;
  space_quota?: number | null;
  site_admin?: boolean;
  system_admin?: boolean;
  [k: string]: unknown;
}

export interface PersonFull extends Person {
  company?: Organization | number | null;
}

export interface PersonCreate {
  company_id: number;
  first_name: string;
  last_name: string;
  email: string;
  password: string;
  username?: string;
  space_quota?: number;
  mobile_phone?: string;
  mobile_service_provider_id?: number;
  site_admin?: boolean;
  system_admin?: boolean;
  create_root?: boolean;
}

/** In updates, null clears an optional field (unlimited quota, no phone): sent as an empty value. */
export interface PersonUpdate {
  id: number;
  first_name?: string;
  last_name?: string;
  company_id?: number;
  space_quota?: number | null;
  password?: string;
  mobile_phone?: string | null;
  mobile_service_provider_id?: number | null;
  system_admin?: boolean;
  site_admin?: boolean;
}

export interface CreateResult {
  code: string;
  id: number;
  uri?: string;
  full_uri?: string;
  root_created?: boolean;
  [k: string]: unknown;
}

export interface Organization {
  id: number;
  parent_id?: number | null;
  name?: string;
  slug?: string;
  description?: string;
  email?: string;
  hostname?: string;
  policy?: unknown;
  active?: boolean;
  [k: string]: unknown;
}

/** A bandwidth limit and its exception window, the same on organizations (create, update) and machines. */
export interface BandwidthThrottle {
  bandwidth_throttle?: number | null;
  throttle_exception_dow?: string | null;
  throttle_exception_days?: 'weekdays' | 'weekends';
  throttle_exception_start?: string | null;
  throttle_exception_end?: string | null;
  throttle_exception_throttle?: number | null;
}

export interface OrganizationCreate extends BandwidthThrottle {
  name: string;
  contact_email: string;
  slug: string;
  /** The service takes the policy as text (JSON of the policy fields). */
  policy: string;
  parent_id: number;
  hostname?: string;
  description?: string;
}

export interface OrganizationUpdate extends BandwidthThrottle {
  id: number;
  name?: string;
  description?: string;
  contact_email?: string;
  slug?: string;
  policy?: string;
  hostname?: string;
}

export type OrgSubList = 'organizations' | 'roots' | 'machines' | 'persons';

export interface PolicyUpdate {
  id: number;
  space_quota?: number | null;
  max_file_size?: number | null;
  purge_deleted?: boolean;
  trim_revisions?: boolean;
  excluded_extensions?: string | null;
  user_purge_deleted?: boolean;
  purge_deleted_frequency?: number | null;
  user_trim_revisions?: boolean;
  user_create_backups?: boolean;
  trim_revisions_x?: number | null;
}

export interface Root {
  id: number;
  name?: string;
  description?: string;
  company_id?: number;
  person_id?: number | null;
  dept_share?: boolean;
  backup?: boolean;
  [k: string]: unknown;
}

export interface RootCreate {
  company_id: number;
  name: string;
  person_id?: number;
  default?: boolean;
  description?: string;
  dept_share?: boolean;
  /** Server extension: a backup root (account info type "backup"). */
  backup?: boolean;
}

export interface RootUpdate {
  id: number;
  company_id?: number;
  name?: string;
  description?: string;
  person_id?: number;
  default?: boolean;
}

export interface Machine {
  id: number;
  [k: string]: unknown;
}

export interface MachineUpdate extends BandwidthThrottle {
  id: number;
}

export interface ActivityType {
  id: number;
  activity: string;
  machine_scope?: boolean;
  user_scope?: boolean;
  system_scope?: boolean;
  [k: string]: unknown;
}

export interface Activity {
  id: number;
  action_text?: string | null;
  actor_type?: string | null;
  actor_text?: string | null;
  acted_on_type?: string | null;
  acted_on_text?: string | null;
  data_text?: string | null;
  activity_type_id?: number;
  created?: string;
  [k: string]: unknown;
}

export interface ActivityCreate {
  activity_type_id: number;
  actor_id: number;
  actor_type: 'person' | 'site' | 'machine';
  acted_on_id: number;
  acted_on_type: 'person' | 'site' | 'machine' | 'root';
  actor_text?: string;
  acted_on_text?: string;
  data_text?: string;
}

export type ActivityEntity = 'organization' | 'person';

export interface PageOptions {
  /** 1-based page; default 1. */
  page?: number;
  /** Follow the pages to the end and return every item. */
  all?: boolean;
}
