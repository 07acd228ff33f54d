import ltxvfs from './index.js';

export const { getLoadablePath, load, register, setDefaultVfs, lastError, open, SETTINGS } = ltxvfs;
export default ltxvfs;
